//! Compiles `proto/switchyard/v1/*.proto` with protox (pure Rust, no system `protoc`):
//! the encoded descriptor set goes to `$OUT_DIR/switchyard_descriptor.bin` for server reflection,
//! and tonic-prost-build generates the messages, clients and servers from the same descriptors.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

/// The proto package compiled by this crate, as a directory under the include root.
const PACKAGE_DIR: &str = "switchyard/v1";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let include = manifest_dir.join("../../proto");
    let package_dir = include.join(PACKAGE_DIR);
    println!("cargo:rerun-if-changed={}", package_dir.display());

    // Every .proto of the package, by the name imports use (`switchyard/v1/common.proto`).
    let mut files = Vec::new();
    for entry in fs::read_dir(&package_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().ok_or("proto file without a name")?;
            files.push(PathBuf::from(PACKAGE_DIR).join(name));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files in {}", package_dir.display()).into());
    }

    let mut compiler = protox::Compiler::new([&include])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("switchyard_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // Map fields become BTreeMaps, like `switchyard_types::Labels`: ordered and convertible as is.
        .btree_map(".")
        .build_client(env::var_os("CARGO_FEATURE_CLIENT").is_some())
        .build_server(env::var_os("CARGO_FEATURE_SERVER").is_some())
        // No generated `Client::connect` constructor: it would clash with the `Connect` RPC of
        // `AgentService`. Clients are built from a `Channel` with `Client::new`.
        .build_transport(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
