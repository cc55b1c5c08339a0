//! Compiles `proto/flywheel/v1/feedback.proto` with the pure-Rust `protox` compiler (no `protoc`
//! on the build machine) and generates the prost types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let file = "../../proto/flywheel/v1/feedback.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], [proto_root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
