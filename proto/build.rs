fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=watchtower.proto");
    tonic_prost_build::configure().compile_protos(&["watchtower.proto"], &["."])?;
    Ok(())
}
