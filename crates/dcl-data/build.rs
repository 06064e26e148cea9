//! Compiles the libjpeg shim `src/decode/region.c` against the system's libjpeg(-turbo),
//! found through pkg-config (Debian: libjpeg62-turbo-dev).

fn main() {
    println!("cargo:rerun-if-changed=src/decode/region.c");
    let libjpeg = pkg_config::Config::new()
        .probe("libjpeg")
        .unwrap_or_else(|e| panic!("libjpeg not found (Debian: apt-get install libjpeg62-turbo-dev): {e}"));
    cc::Build::new()
        .file("src/decode/region.c")
        .includes(&libjpeg.include_paths)
        .warnings(true)
        .compile("dcl_jpeg_region");
}
