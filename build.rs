//! Lets `cargo test` link the rlib against libpython; maturin links the extension itself.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
