//! OpenBLAS for the matrix products, when the host has it; faer's GEMM otherwise.
//!
//! On an Intel processor with AVX-512, whose kernels for it OpenBLAS ran (`SkylakeX`),
//! OpenBLAS's `sgemm` ran the 1000×768×1000 product at 1.5× faer's rate per core
//! (BENCHMARKS.md, "The matrix product: OpenBLAS when the host has it"), and the product is
//! the largest part of the CPU time of dense requests that bring binary or base64 tensors.
//! Where the processor has AVX-512 and OpenBLAS does not use it (Debian 12's 0.3.21 predates
//! OpenBLAS's AVX-512 kernels for AMD processors: it ran its 256-bit `Haswell` ones on an AMD
//! EPYC with AVX-512), faer's 512-bit kernels ran it at 1.8× OpenBLAS's rate: `auto` then
//! keeps faer ([`faer_is_faster`]). The library is not linked: it is opened at run time, so
//! the binary builds and runs where it is missing, and is used only after it multiplied a
//! small product exactly.
//!
//! When to use what:
//! - [`start`] once at start-up, with the operator's [`BlasChoice`]: `auto` (the default)
//!   opens `libopenblas.so.0` if the host has it and keeps it unless [`faer_is_faster`],
//!   `off` keeps faer, a path must open (and is used whatever its kernels);
//! - without [`start`] (tests, library users), the first product opens `libopenblas.so.0` if
//!   the host has it, whatever its kernels: tests of the OpenBLAS path take it on any host;
//! - [`super::gemm`] asks [`chosen`] for every product. Each OpenBLAS call runs on the
//!   calling thread (OpenBLAS's own threads are set to one): the compute pool splits the
//!   rows, as it does for faer.

#![allow(unsafe_code)]

use std::ffi::{CStr, OsStr, c_char, c_int};
use std::path::PathBuf;
use std::sync::OnceLock;

use libloading::Library;

/// Which library the matrix products use, as the operator chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlasChoice {
    /// OpenBLAS if the host has it ([`AUTO_NAMES`]) and [`faer_is_faster`] does not hold,
    /// else faer.
    Auto,
    /// faer's GEMM, built in.
    Off,
    /// The OpenBLAS library at this path; start-up fails if it does not open and check.
    Library(PathBuf),
}

impl std::str::FromStr for BlasChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(BlasChoice::Auto),
            "off" => Ok(BlasChoice::Off),
            "" => Err("expected auto, off or a library's path".to_owned()),
            path => Ok(BlasChoice::Library(PathBuf::from(path))),
        }
    }
}

/// The names `auto` opens, first found wins: Debian's `libopenblas0` provides the first.
pub const AUTO_NAMES: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

/// Why a BLAS library is not used.
#[derive(Debug, thiserror::Error)]
pub enum BlasError {
    /// The library did not open.
    #[error("cannot open {library}: {source}")]
    Open {
        /// The library's name or path.
        library: String,
        /// The loader's error.
        source: libloading::Error,
    },
    /// The library lacks a function simserve calls: it is not OpenBLAS.
    #[error("{library} has no {symbol}: not an OpenBLAS library")]
    Missing {
        /// The library's name or path.
        library: String,
        /// The function not found.
        symbol: &'static str,
    },
    /// The library is an OpenBLAS build simserve cannot call safely: 64-bit integers
    /// (ILP64), or threads other than its own pthreads (OpenMP, or none: not safe to call
    /// from several threads at once).
    #[error("{library} is an OpenBLAS build simserve does not use: {why}")]
    Unsuitable {
        /// The library's name or path.
        library: String,
        /// What is wrong with the build.
        why: String,
    },
    /// The library multiplied the start-up check wrongly.
    #[error("{library} multiplied a check product wrongly")]
    Wrong {
        /// The library's name or path.
        library: String,
    },
}

/// CBLAS's enumerations (`cblas.h`).
const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// `cblas_sgemm` and `cblas_dgemm`: order, transposes, m, n, k, alpha, a, lda, b, ldb, beta,
/// c, ldc. Debian's OpenBLAS takes 32-bit integers (LP64).
type Gemm<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *const T,
    c_int,
    T,
    *mut T,
    c_int,
);

/// An opened, checked OpenBLAS.
pub struct Blas {
    sgemm: Gemm<f32>,
    dgemm: Gemm<f64>,
    /// What `openblas_get_config` says: version, kernel, threading.
    description: String,
    /// The processor kind whose kernels it runs (`openblas_get_corename`: `Haswell`,
    /// `SkylakeX`, `Zen`, ...); empty if it does not say.
    kernels: String,
    /// Keeps the functions above loaded.
    _library: Library,
}

impl std::fmt::Debug for Blas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blas")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// A function of `library`, as a plain pointer valid while `library` stays loaded.
///
/// # Safety
/// `F` must be the function's true type.
unsafe fn function<F: Copy>(
    library: &Library,
    name: &OsStr,
    symbol: &'static str,
) -> Result<F, BlasError> {
    let with_nul = format!("{symbol}\0");
    // SAFETY: the caller gives the function's type.
    unsafe { library.get::<F>(with_nul.as_bytes()) }
        .map(|found| *found)
        .map_err(|_| BlasError::Missing {
            library: name.to_string_lossy().into_owned(),
            symbol,
        })
}

impl Blas {
    /// Opens the OpenBLAS at `name` (a path, or a name the dynamic loader looks up), refuses
    /// builds it cannot call safely (64-bit integers, OpenMP or serial threading), sets its
    /// own threads to one and checks one product of each precision. What `name` exports under
    /// OpenBLAS's names is trusted to be OpenBLAS: name only an OpenBLAS library.
    pub fn open(name: impl AsRef<OsStr>) -> Result<Blas, BlasError> {
        let name = name.as_ref();
        let named = || name.to_string_lossy().into_owned();
        // SAFETY: opening runs the library's initialisers; OpenBLAS's only read the machine
        // and start its (idle) thread pool.
        let library = unsafe { Library::new(name) }.map_err(|source| BlasError::Open {
            library: named(),
            source,
        })?;
        // SAFETY: the types are those of OpenBLAS's `cblas.h` and `openblas_config.h`.
        let (sgemm, dgemm, set_threads, get_config, get_parallel) = unsafe {
            (
                function::<Gemm<f32>>(&library, name, "cblas_sgemm")?,
                function::<Gemm<f64>>(&library, name, "cblas_dgemm")?,
                function::<unsafe extern "C" fn(c_int)>(
                    &library,
                    name,
                    "openblas_set_num_threads",
                )?,
                function::<unsafe extern "C" fn() -> *const c_char>(
                    &library,
                    name,
                    "openblas_get_config",
                )?,
                function::<unsafe extern "C" fn() -> c_int>(
                    &library,
                    name,
                    "openblas_get_parallel",
                )?,
            )
        };
        // SAFETY: as above; OpenBLAS has had this function since 0.2, but it is not needed.
        let get_corename = unsafe {
            function::<unsafe extern "C" fn() -> *const c_char>(
                &library,
                name,
                "openblas_get_corename",
            )
        }
        .ok();
        let text = |of: *const c_char| {
            if of.is_null() {
                String::new()
            } else {
                // SAFETY: not null, so one of the library's static C strings.
                unsafe { CStr::from_ptr(of) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: these take and return plain values; the strings are static C strings.
        let (description, kernels, parallel) = unsafe {
            (
                text(get_config()),
                get_corename.map_or_else(String::new, |corename| text(corename())),
                get_parallel(),
            )
        };
        let unsuitable = |why: &str| BlasError::Unsuitable {
            library: named(),
            why: why.to_owned(),
        };
        if description.contains("USE64BITINT") {
            return Err(unsuitable("64-bit integers (ILP64)"));
        }
        // 0: serial, 1: pthreads, 2: OpenMP (`openblas_config.h`).
        if parallel != 1 {
            return Err(unsuitable(if parallel == 2 {
                "OpenMP threading"
            } else {
                "built without threads"
            }));
        }
        // SAFETY: takes a plain value.
        unsafe { set_threads(1) };
        let blas = Blas {
            sgemm,
            dgemm,
            description,
            kernels,
            _library: library,
        };
        if blas.multiplies_exactly() {
            Ok(blas)
        } else {
            Err(BlasError::Wrong { library: named() })
        }
    }

    /// What the library says of itself: version, kernel, threading.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The processor kind whose kernels the library runs (`Haswell`, `SkylakeX`, ...), or
    /// empty if it does not say.
    pub fn kernels(&self) -> &str {
        &self.kernels
    }

    /// Whether a small product of integers (exact in both precisions) comes out exact, at a
    /// shape that takes the kernels' edge paths.
    fn multiplies_exactly(&self) -> bool {
        let (n, m, dim) = (5, 7, 3);
        let a: Vec<f64> = (0..n * dim).map(|v| (v % 7) as f64 - 3.0).collect();
        let b: Vec<f64> = (0..m * dim).map(|v| (v % 5) as f64 - 2.0).collect();
        let want: Vec<f64> = (0..n * m)
            .map(|at| {
                let (i, j) = (at / m, at % m);
                (0..dim).map(|k| a[i * dim + k] * b[j * dim + k]).sum()
            })
            .collect();
        let mut wide = vec![f64::NAN; n * m];
        let mut narrow = vec![f32::NAN; n * m];
        let (a32, b32): (Vec<f32>, Vec<f32>) = (
            a.iter().map(|&v| v as f32).collect(),
            b.iter().map(|&v| v as f32).collect(),
        );
        self.a_bt(&a, &b, dim, &mut wide)
            && self.a_bt(&a32, &b32, dim, &mut narrow)
            && wide == want
            && narrow
                .iter()
                .zip(&want)
                .all(|(&got, &w)| f64::from(got) == w)
    }

    /// `out = a · bᵀ` on the calling thread: `a` holds `n` rows and `b` holds `m` rows of
    /// `dim` values, `out` is `n × m`, all row-major. `false` (and `out` untouched) when the
    /// sizes do not describe such a product or do not fit OpenBLAS's 32-bit integers.
    pub fn a_bt<T: Element>(&self, a: &[T], b: &[T], dim: usize, out: &mut [T]) -> bool {
        let Some(dim32) = c_int::try_from(dim).ok().filter(|&d| d > 0) else {
            return false;
        };
        let (n, m) = (a.len() / dim, b.len() / dim);
        let (Ok(n32), Ok(m32)) = (c_int::try_from(n), c_int::try_from(m)) else {
            return false;
        };
        if n == 0 || m == 0 || a.len() != n * dim || b.len() != m * dim || out.len() != n * m {
            return false;
        }
        // SAFETY: `a` holds `n × dim`, `b` holds `m × dim` and `out` holds `n × m` values,
        // row-major with the leading dimensions given; the call reads and writes only those.
        unsafe {
            (T::gemm(self))(
                ROW_MAJOR,
                NO_TRANS,
                TRANS,
                n32,
                m32,
                dim32,
                T::ONE,
                a.as_ptr(),
                dim32,
                b.as_ptr(),
                dim32,
                T::ZERO,
                out.as_mut_ptr(),
                m32,
            );
        }
        true
    }
}

/// The precisions OpenBLAS multiplies for simserve: `f32` (scores) and `f64` (euclidean's
/// widened products).
pub trait Element: Copy + Sized + private::Sealed {
    /// One, the product's scale.
    const ONE: Self;
    /// Zero, the scale of what `out` held.
    const ZERO: Self;
    /// The library's GEMM of this precision.
    fn gemm(blas: &Blas) -> Gemm<Self>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Element for f32 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
    fn gemm(blas: &Blas) -> Gemm<Self> {
        blas.sgemm
    }
}

impl Element for f64 {
    const ONE: Self = 1.0;
    const ZERO: Self = 0.0;
    fn gemm(blas: &Blas) -> Gemm<Self> {
        blas.dgemm
    }
}

/// The process's choice: `Some` when products go to OpenBLAS.
static CHOSEN: OnceLock<Option<Blas>> = OnceLock::new();

/// What [`start`] settled.
#[derive(Debug)]
pub enum Products {
    /// OpenBLAS multiplies.
    OpenBlas(&'static Blas),
    /// faer multiplies; why, for the start-up log.
    Faer(String),
}

/// `auto`: the first of [`AUTO_NAMES`] that opens and checks.
fn auto() -> Result<Blas, Vec<BlasError>> {
    let mut errors = Vec::new();
    for name in AUTO_NAMES {
        match Blas::open(name) {
            Ok(blas) => return Ok(blas),
            Err(err) => errors.push(err),
        }
    }
    Err(errors)
}

/// Settles which library multiplies, once per process; a second call reports the first
/// call's choice. Fails only when a path was given and does not open and check.
pub fn start(choice: &BlasChoice) -> Result<Products, BlasError> {
    if let Some(settled) = CHOSEN.get() {
        return Ok(match settled {
            Some(blas) => Products::OpenBlas(blas),
            None => Products::Faer("chosen earlier in this process".into()),
        });
    }
    let mut why_faer = String::new();
    let chosen = match choice {
        BlasChoice::Off => {
            why_faer = "SIMSERVE_BLAS=off".to_owned();
            None
        }
        BlasChoice::Auto => match auto() {
            Ok(blas) if faer_is_faster(blas.kernels(), has_avx512()) => {
                let kernels = match blas.kernels() {
                    "" => "kernels (it does not name them)".to_owned(),
                    named => format!("{named} kernels"),
                };
                why_faer = format!(
                    "the processor has AVX-512, which OpenBLAS's {kernels} do not use and \
                     faer's do (on an Intel processor newer than this OpenBLAS, \
                     OPENBLAS_CORETYPE=SkylakeX has it use its 512-bit kernels, which auto \
                     then keeps; --blas or SIMSERVE_BLAS with the library's path uses it \
                     anyway): {}",
                    blas.description()
                );
                None
            }
            Ok(blas) => Some(blas),
            Err(errors) => {
                let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                why_faer = reasons.join("; ");
                None
            }
        },
        BlasChoice::Library(path) => Some(Blas::open(path)?),
    };
    // A product on another thread may have made the `auto` choice meanwhile: the first wins.
    let settled = CHOSEN.get_or_init(|| chosen);
    Ok(match settled {
        Some(blas) => Products::OpenBlas(blas),
        None => Products::Faer(why_faer),
    })
}

/// OpenBLAS kernels (as `openblas_get_corename` names them) that use 512-bit vectors.
const WIDE_KERNELS: [&str; 3] = ["SkylakeX", "Cooperlake", "SapphireRapids"];

/// Whether faer's GEMM is taken over an OpenBLAS running `kernels`' kernels: where the
/// processor has AVX-512 and those kernels do not use it. faer's own 512-bit kernels then
/// multiplied 1000×768×1000 at 1.8× OpenBLAS's `Haswell` kernels' rate on one core of an
/// AMD EPYC with AVX-512, and 1.5–2.3× at the other shapes of `examples/gemm_libraries.rs`
/// but the smallest (8×128×8, alike). OpenBLAS's own 512-bit kernels (`SkylakeX`) ran the
/// product at 1.5× faer's rate on an Intel processor with AVX-512, so they are kept; without
/// AVX-512 both libraries run 256-bit kernels and OpenBLAS is kept, as before.
pub fn faer_is_faster(kernels: &str, avx512: bool) -> bool {
    avx512
        && !WIDE_KERNELS
            .iter()
            .any(|wide| kernels.eq_ignore_ascii_case(wide))
}

/// Whether this processor has AVX-512 (its foundation instructions).
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The library that takes products of [`super::gemm::BLAS_MIN_DIM`] dimensions or more:
/// `"openblas"` or `"faer"`, for the metrics.
pub fn library() -> &'static str {
    if chosen().is_some() {
        "openblas"
    } else {
        "faer"
    }
}

/// The OpenBLAS products go to, if any (the `auto` choice if [`start`] was not called).
pub(crate) fn chosen() -> Option<&'static Blas> {
    CHOSEN.get_or_init(|| auto().ok()).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's OpenBLAS; the tests need it (Debian: `libopenblas0`), as CI installs it.
    fn host_blas() -> Blas {
        Blas::open(AUTO_NAMES[0]).unwrap_or_else(|err| {
            panic!("these tests need OpenBLAS (Debian's libopenblas0): {err}")
        })
    }

    #[test]
    fn the_host_openblas_opens_checks_and_describes_itself() {
        let blas = host_blas();
        assert!(blas.description().starts_with("OpenBLAS"), "{blas:?}");
        assert!(!blas.description().contains("USE64BITINT"), "{blas:?}");
        assert!(blas.multiplies_exactly());
    }

    #[test]
    fn the_host_openblas_names_its_kernels() {
        let kernels = host_blas().kernels().to_owned();
        assert!(!kernels.is_empty());
        assert!(
            host_blas().description().contains(&kernels),
            "{kernels} not in {:?}",
            host_blas().description()
        );
    }

    #[test]
    fn faer_is_taken_only_where_the_processor_has_avx512_and_openblas_does_not_use_it() {
        assert!(faer_is_faster("Haswell", true));
        assert!(faer_is_faster("Zen", true));
        assert!(faer_is_faster("", true), "kernels it does not name");
        assert!(!faer_is_faster("SkylakeX", true));
        assert!(!faer_is_faster("cooperlake", true));
        assert!(!faer_is_faster("SapphireRapids", true));
        assert!(!faer_is_faster("Haswell", false));
        assert!(!faer_is_faster("", false));
    }

    #[test]
    fn a_library_that_is_not_openblas_is_refused_by_name() {
        let err = Blas::open("libc.so.6").unwrap_err();
        assert!(
            matches!(
                err,
                BlasError::Missing {
                    symbol: "cblas_sgemm",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "libc.so.6 has no cblas_sgemm: not an OpenBLAS library"
        );
    }

    #[test]
    fn a_path_that_does_not_open_is_an_error() {
        // What `start` gives for this choice; called directly, because once any test in this
        // process has multiplied, `start` answers with the choice settled then.
        let choice: BlasChoice = "/nonexistent/libopenblas.so.0".parse().unwrap();
        let BlasChoice::Library(path) = choice else {
            panic!("a path is a library choice: {choice:?}");
        };
        let err = Blas::open(&path).unwrap_err();
        assert!(matches!(err, BlasError::Open { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot open /nonexistent/libopenblas.so.0: ")
        );
    }

    #[test]
    fn choices_parse_from_their_words_and_paths() {
        assert_eq!("auto".parse::<BlasChoice>(), Ok(BlasChoice::Auto));
        assert_eq!("off".parse::<BlasChoice>(), Ok(BlasChoice::Off));
        assert_eq!(
            "/usr/lib/libopenblas.so.0".parse::<BlasChoice>(),
            Ok(BlasChoice::Library("/usr/lib/libopenblas.so.0".into()))
        );
        assert!("".parse::<BlasChoice>().is_err());
    }

    #[test]
    fn sizes_that_are_not_a_product_are_left_to_faer() {
        let blas = host_blas();
        let mut out = [7.0f32; 4];
        assert!(
            !blas.a_bt(&[1.0f32; 6], &[1.0; 4], 2, &mut out),
            "out of the wrong size"
        );
        assert!(
            !blas.a_bt(&[1.0f32; 5], &[1.0; 4], 2, &mut out),
            "a ragged row"
        );
        assert!(!blas.a_bt::<f32>(&[], &[], 0, &mut []), "no dimension");
        assert_eq!(out, [7.0; 4], "left untouched");
    }
}
