fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=payhub/v1/raft.proto");
    tonic_build::configure().compile_protos(&["payhub/v1/raft.proto"], &["."])?;
    Ok(())
}
