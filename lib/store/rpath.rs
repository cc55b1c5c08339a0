//! Build script of every package that links a binary or test with the embedded store
//! (flywheel-store, flywheel-datasets, flywheel-api, flywheel-ingester and the `flywheel`
//! binary): records where the dynamic loader finds libduckdb.so at run time.
//!
//! `libduckdb-sys` links `-lduckdb` from `DUCKDB_LIB_DIR` (.cargo/config.toml:
//! `.local/duckdb/lib`, installed by deploy/local/duckdb.sh) but leaves finding the library at
//! run time to the loader. A run path is a link argument of the final binary, which cargo only
//! takes from the binary's own package, hence this one script shared by those packages:
//! - the absolute `DUCKDB_LIB_DIR`, for binaries run from the build tree (cargo test, tests
//!   spawning target/debug/flywheel, a developer's shell);
//! - `$ORIGIN`, for an installed binary shipped with libduckdb.so beside it (deploy/Dockerfile).

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
}
