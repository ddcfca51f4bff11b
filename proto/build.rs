//! Compiles `hazardwatch/v1/*.proto` and the Sparkplug B payload
//! (`sparkplug_b/sparkplug_b.proto`) with protox (pure Rust: no system
//! `protoc`) and generates prost messages and tonic services, plus the file
//! descriptor set the gRPC reflection service serves, and serde
//! implementations of the protobuf JSON mapping (pbjson) for HTTP clients.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "hazardwatch/v1/telemetry.proto",
        "hazardwatch/v1/alarms.proto",
        "hazardwatch/v1/journal.proto",
        "hazardwatch/v1/site.proto",
        "sparkplug_b/sparkplug_b.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out.join("hazardwatch_descriptor.bin"), &encoded)?;
    // The protobuf JSON mapping of the hazardwatch messages (serde), for
    // the console's HTTP API: field names as in the .proto files, every
    // field written (a browser need not know proto3's defaults).
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .out_dir(&out)
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".hazardwatch.v1"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
