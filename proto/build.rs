fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["payhub/v1/raft.proto", "payhub/v1/node.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_build::configure().compile_protos(&protos, &["."])?;
    Ok(())
}
