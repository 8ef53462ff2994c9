//! Compiles the MuJoCo C shim when the optional `mujoco` feature is on; does nothing otherwise.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "mujoco")]
    {
        println!("cargo:rerun-if-changed=csrc/mujoco_shim.c");
        cc::Build::new()
            .file("csrc/mujoco_shim.c")
            .warnings(true)
            .compile("mixpg_mujoco_shim");
        // Debian's libmujoco-dev installs libmujoco.so into the default library path.
        println!("cargo:rustc-link-lib=dylib=mujoco");
    }
}
