//! Links libtorch's CUDA library into the `dcl` binary (and its tests). The linker's
//! `--as-needed` would drop it, since no symbol of dcl's refers to it directly, and libtorch
//! would then see no CUDA device. The torch wheel ships it on every machine, GPU or not; its
//! directory is on the link path already (torch-sys's build script puts it there).
fn main() {
    let link = "-Wl,--no-as-needed,-ltorch_cuda,--as-needed";
    println!("cargo:rustc-link-arg-bins={link}");
    println!("cargo:rustc-link-arg-tests={link}");
}
