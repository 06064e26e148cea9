//! Compiles the C++ shims (csrc/: mixed precision, pinned memory, optimiser arithmetic) against
//! the libtorch that tch links: its directory comes from torch-sys's build script
//! (`links = "tch"`).
fn main() {
    println!("cargo:rerun-if-changed=csrc");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys reports the libtorch directory");
    let root = std::path::Path::new(&lib)
        .parent()
        .expect("libtorch's lib has a parent");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // The PyPI wheels of torch >= 2.7 use the C++11 ABI.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file("csrc/amp.cpp")
        .file("csrc/memory.cpp")
        .file("csrc/optimizer.cpp")
        .compile("dcl_torch_shim");
}
