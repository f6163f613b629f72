//! `switchyard admin …`: tenants, roles, users and API keys, as a platform administrator and
//! as a user without the `admin` scope.

use super::{ConfigDir, fails, login_admin, ok, rows_starting, run, text};
use crate::support::{self, ADMIN_EMAIL, Db, Server, send};

#[tokio::test]
async fn cli_administers_tenants_users_roles_and_api_keys() {
    let s = Server::start(Db::Sqlite, &[]).await;
    let cfg = ConfigDir::new();
    let dir = cfg.0.as_path();
    login_admin(&s, dir);

    // Tenants.
    let created = ok(
        &s,
        dir,
        &["admin", "tenant", "create", "acme", "--name", "Acme"],
        "",
    );
    assert_eq!(created.lines().next(), Some("ID\tNAME\tCREATED"));
    assert_eq!(rows_starting(&created, "acme")[0][1], "Acme");
    let list = ok(&s, dir, &["admin", "tenant", "list"], "");
    assert_eq!(list.lines().next(), Some("ID\tNAME\tCREATED"));
    assert_eq!(rows_starting(&list, "acme").len(), 1, "{list}");
    assert_eq!(rows_starting(&list, "default").len(), 1, "{list}");
    let dup = fails(
        &s,
        dir,
        &["admin", "tenant", "create", "acme", "--name", "Acme"],
        "",
        &[],
    );
    assert!(dup.contains("switchyard: already_exists: "), "{dup}");

    // Roles, then users: one in another tenant (password from the environment), one here
    // (password on stdin) with the custom role.
    let role = ok(
        &s,
        dir,
        &[
            "admin",
            "role",
            "put",
            "ci-reader",
            "--scopes",
            "jobs:read,agents:read",
        ],
        "",
    );
    assert_eq!(
        rows_starting(&role, "ci-reader")[0][1..],
        ["custom", "jobs:read,agents:read"]
    );
    let roles = ok(&s, dir, &["admin", "role", "list"], "");
    assert_eq!(roles.lines().next(), Some("NAME\tKIND\tSCOPES"));
    assert_eq!(rows_starting(&roles, "admin")[0][1], "builtin");
    assert_eq!(rows_starting(&roles, "ci-reader").len(), 1, "{roles}");

    let acme_user = [
        "admin",
        "user",
        "create",
        "--email",
        "dev@acme.test",
        "--role",
        "developer",
        "--tenant",
        "acme",
    ];
    let out = run(
        &s,
        dir,
        &acme_user,
        "",
        &[("SWITCHYARD_NEW_PASSWORD", "acme-dev-password-1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let header = "ID\tEMAIL\tTENANT\tROLE\tSTATUS\tCREATED";
    let created = text(&out.stdout);
    assert_eq!(created.lines().next(), Some(header));
    assert!(
        created.contains("\tdev@acme.test\tacme\tdeveloper\tactive\t"),
        "{created}"
    );
    let reader = [
        "admin",
        "user",
        "create",
        "--email",
        "reader@it.test",
        "--role",
        "ci-reader",
    ];
    ok(&s, dir, &reader, "reader-password-42\n");
    let users = ok(&s, dir, &["admin", "user", "list"], "");
    assert_eq!(users.lines().next(), Some(header));
    assert!(
        users.contains(&format!("\t{ADMIN_EMAIL}\tdefault\tadmin\tactive\t")),
        "{users}"
    );
    assert!(
        users.contains("\treader@it.test\tdefault\tci-reader\tactive\t"),
        "{users}"
    );
    assert!(
        !users.contains("dev@acme.test"),
        "another tenant's user listed: {users}"
    );

    // The new user logs in with the CLI too; without the admin scope, admin calls are refused.
    let other = ConfigDir::new();
    let login = ["login", "--email", "dev@acme.test"];
    ok(&s, &other.0, &login, "acme-dev-password-1\n");
    let denied = fails(&s, &other.0, &["admin", "user", "list"], "", &[]);
    assert!(
        denied.contains("switchyard: permission_denied: "),
        "{denied}"
    );

    // An API key: printed once on stdout, working as a bearer until revoked.
    let out = run(
        &s,
        dir,
        &["admin", "api-key", "create", "ci", "--scopes", "jobs:read"],
        "",
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim_end().to_owned();
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "only the key on stdout"
    );
    assert!(
        text(&out.stderr).contains("cannot be shown again"),
        "{}",
        text(&out.stderr)
    );
    let jobs = support::client_with(&key).get(s.url("/api/queue/jobs"));
    assert_eq!(send(jobs).await.0, 200);

    let keys = ok(&s, dir, &["admin", "api-key", "list"], "");
    let header = "ID\tNAME\tSCOPES\tSTATUS\tCREATED\tEXPIRES\tREVOKED\tCREATED_BY";
    assert_eq!(keys.lines().next(), Some(header));
    assert!(!keys.contains(&key), "a listing shows the key itself");
    let row = keys
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|cells| cells[1] == "ci")
        .unwrap_or_else(|| panic!("no key `ci` in {keys}"));
    assert_eq!(row[2..6], ["jobs:read", "live", row[4], "-"]);
    let id = row[0].to_owned();

    let revoked = ok(&s, dir, &["admin", "api-key", "revoke", &id], "");
    assert!(revoked.contains("\trevoked\t"), "{revoked}");
    let jobs = support::client_with(&key).get(s.url("/api/queue/jobs"));
    assert_eq!(send(jobs).await.0, 401);

    // An admin-scoped key as SWITCHYARD_TOKEN stands in for a log-in.
    let ops = ok(
        &s,
        dir,
        &["admin", "api-key", "create", "ops", "--scopes", "admin"],
        "",
    );
    let nobody = ConfigDir::new();
    let token = [("SWITCHYARD_TOKEN", ops.trim_end())];
    let out = run(&s, &nobody.0, &["admin", "tenant", "list"], "", &token);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!nobody.session().exists());

    // The key as SWITCHYARD_TOKEN overrides the session: revoked, it is refused (no refresh).
    let err = fails(
        &s,
        dir,
        &["admin", "tenant", "list"],
        "",
        &[("SWITCHYARD_TOKEN", &key)],
    );
    assert!(err.contains("switchyard: unauthenticated: "), "{err}");
}
