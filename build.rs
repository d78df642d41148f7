//! Compiles the protobuf definitions under `proto/` with `protox` (pure Rust, no system
//! `protoc`) and generates the tonic/prost code included by the crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "muster/raft/v1/raft.proto",
        "muster/internal/v1/forward.proto",
        "muster/registry/v1/registry.proto",
        "muster/cluster/v1/cluster.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed=proto/{p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // The descriptor set feeds gRPC server reflection (grpcurl list/describe).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("muster_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
