//! The C math functions the binary calls (Lua's `math` library, tokio's one `pow`),
//! defined here from the `libm` crate so that the linker needs no `libm.so`.
//!
//! glibc's libm was mapped only for these sixteen functions, yet cost an idle master about
//! half a MiB: the loader looks every symbol up in its tables and, binding at load, runs
//! the resolvers of its CPU-specific variants, and each page it touches maps its neighbours
//! with it. The `libm` crate is musl's libm in Rust, within an ulp of glibc's. Only the
//! binary defines them: the library's tests link glibc's as before.

macro_rules! c_math {
    ($($name:ident($($arg:ident),+);)+) => {$(
        /// As C's, from the `libm` crate.
        #[no_mangle]
        pub extern "C" fn $name($($arg: f64),+) -> f64 {
            libm::$name($($arg),+)
        }
    )+};
}

c_math! {
    acos(x);
    asin(x);
    atan2(y, x);
    cos(x);
    cosh(x);
    exp(x);
    log(x);
    log10(x);
    log2(x);
    pow(x, y);
    sin(x);
    sinh(x);
    tan(x);
    tanh(x);
}

/// As C's `frexp`: `x` as a fraction in [0.5, 1) times 2 to the power written to `exp`.
///
/// # Safety
/// `exp` points to a writable `int`, as C requires.
#[no_mangle]
pub unsafe extern "C" fn frexp(x: f64, exp: *mut std::ffi::c_int) -> f64 {
    let (fraction, power) = libm::frexp(x);
    // SAFETY: the caller hands a valid `int` pointer, as C's frexp requires.
    unsafe { exp.write(power) };
    fraction
}

/// As C's `ldexp`: `x` times 2 to the power `exp`.
#[no_mangle]
pub extern "C" fn ldexp(x: f64, exp: std::ffi::c_int) -> f64 {
    libm::ldexp(x, exp)
}
