//! docs/api.md lists the policy table exactly. Run with `UPDATE_DOCS=1` to rewrite the list.

use std::path::PathBuf;

const START: &str = "<!-- policy-table:start -->\n| route or RPC | requires |\n|---|---|\n";
const END: &str = "<!-- policy-table:end -->";

#[test]
fn api_docs_list_every_route_and_rpc_with_its_scope() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    let doc = std::fs::read_to_string(&path).expect("docs/api.md");
    let (before, rest) = doc.split_once(START).expect("the table's start marker");
    let (listed, after) = rest.split_once(END).expect("the table's end marker");
    let rows = switchyard_auth::policy::markdown_rows();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{before}{START}{rows}{END}{after}")).expect("write docs");
        return;
    }
    assert_eq!(
        listed, rows,
        "docs/api.md is out of date with crates/auth/src/policy.rs; rerun with UPDATE_DOCS=1"
    );
}
