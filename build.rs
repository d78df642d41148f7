//! Compiles the protobuf definitions under `proto/` with `protox` (pure Rust, no system
//! `protoc`) and generates the tonic/prost code included by the crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["muster/raft/v1/raft.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed=proto/{p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
