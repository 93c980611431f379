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
//!
//! The library's own Lua (`lua/prelude.lua`, `lua/sources.lua`) is compiled here by the
//! Lua the binary links: parsing it took about a third of a config's evaluation at every
//! start and reconfig, loading its bytecode a small part of that.

use std::ffi::{c_int, c_void, CString};
use std::path::Path;

use mlua_sys as lua;

fn main() {
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets it");
    for (source, chunk_name) in [
        ("lua/prelude.lua", "buildbot/prelude.lua"),
        ("lua/sources.lua", "buildbot/sources.lua"),
    ] {
        println!("cargo:rerun-if-changed={source}");
        let bytecode = compile(source, chunk_name);
        let file_name = Path::new(source).with_extension("luac");
        let target = Path::new(&out_dir).join(file_name.file_name().expect("a file"));
        std::fs::write(&target, bytecode).expect("OUT_DIR is writable");
    }
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

/// `source` compiled to Lua bytecode with its line information (errors and tracebacks
/// still name `chunk_name` and the line), as `luac` without `-s` writes it.
fn compile(source: &str, chunk_name: &str) -> Vec<u8> {
    let text = std::fs::read(source).unwrap_or_else(|e| panic!("cannot read {source}: {e}"));
    let name = CString::new(format!("={chunk_name}")).expect("no NUL in a chunk name");
    let mut bytecode = Vec::new();
    // SAFETY: a state of our own, closed before returning; the writer only appends the
    // bytes Lua hands it to the Vec behind `data`.
    unsafe {
        let state = lua::luaL_newstate();
        assert!(!state.is_null(), "Lua could not allocate a state");
        let loaded = lua::luaL_loadbufferx(
            state,
            text.as_ptr().cast(),
            text.len(),
            name.as_ptr(),
            c"t".as_ptr(),
        );
        if loaded != lua::LUA_OK {
            let message =
                std::ffi::CStr::from_ptr(lua::lua_tolstring(state, -1, std::ptr::null_mut()));
            panic!("{source} does not compile: {}", message.to_string_lossy());
        }
        let dumped = lua::lua_dump(state, append, (&raw mut bytecode).cast(), 0);
        lua::lua_close(state);
        assert_eq!(dumped, 0, "Lua could not dump {source}");
    }
    bytecode
}

/// `lua_dump`'s writer: appends each piece to the `Vec<u8>` behind `data`.
unsafe extern "C-unwind" fn append(
    _: *mut lua::lua_State,
    piece: *const c_void,
    size: usize,
    data: *mut c_void,
) -> c_int {
    let bytecode = &mut *data.cast::<Vec<u8>>();
    bytecode.extend_from_slice(std::slice::from_raw_parts(piece.cast::<u8>(), size));
    0
}
