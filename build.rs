//! The release binary is linked with the code a start runs placed together, in the order
//! `startup.order` lists it (`scripts/startup-order` writes it from a profile of a start).
//! The kernel maps a binary's code in large runs around each page a process touches, so
//! start-up code spread over the whole text left nearly all of it resident in an idle
//! master; gathered, it fills a few megabytes. Only `rust-lld`, the toolchain's default
//! linker on x86_64 Linux, is given the file; names it no longer finds are skipped.
//!
//! The constants that code reads were spread the same way over the whole `.rodata`, nearly
//! all of it resident. Most are anonymous, so they cannot be listed by symbol:
//! `startup.ld` (written by the same script) names their input sections, and places them
//! in a section of their own before `.rodata` (`INSERT BEFORE` keeps the default layout
//! otherwise); patterns that match nothing are skipped as well.

fn main() {
    println!("cargo:rerun-if-changed=startup.order");
    println!("cargo:rerun-if-changed=startup.ld");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let lld_target = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if release && lld_target {
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={manifest_dir}/startup.order"
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{manifest_dir}/startup.ld");
        // Relative relocations packed (DT_RELR, glibc 2.36): the loader reads a few KiB at
        // exec instead of a megabyte of `.rela.dyn`, which then stayed resident.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
