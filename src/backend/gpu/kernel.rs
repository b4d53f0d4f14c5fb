//! How a WGSL kernel is described to the runtime, and the compile-time check that keeps the
//! Rust dispatch geometry and the shader's tile constants equal.
//!
//! Every kernel binds its parameters as a uniform struct at binding 0 (all fields 4-byte
//! `u32`/`f32`, in the order the Rust side passes them) and its storage buffers at bindings
//! 1, 2, … in the order `Kernel::storage` lists them.

/// How a storage binding is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// A compute entry point of a WGSL file and the layout of its bindings.
#[derive(Debug)]
pub struct Kernel {
    /// The file, for error messages and the pipeline cache.
    pub file: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    /// Storage buffers at bindings 1.. (binding 0 is the params uniform).
    pub storage: &'static [Access],
}

impl Kernel {
    /// The key of this kernel's pipeline in the cache.
    pub fn key(&self) -> (&'static str, &'static str) {
        (self.file, self.entry)
    }
}

/// Declares a `Kernel` for an entry point of a file in `shaders/`.
#[macro_export]
#[doc(hidden)]
macro_rules! wgsl_kernel {
    ($file:literal, $entry:literal, [$($access:ident),* $(,)?]) => {
        $crate::backend::gpu::kernel::Kernel {
            file: $file,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file)),
            entry: $entry,
            storage: &[$($crate::backend::gpu::kernel::Access::$access),*],
        }
    };
}

/// The value of `const NAME: u32 = <digits>u;` in WGSL source, evaluated at compile time, so
/// that `const _: () = assert!(wgsl_u32(SRC, "TILE") == TILE);` fails the build when a shader
/// constant and its Rust mirror differ. Panics (a compile error in const context) when the
/// declaration is missing or malformed.
pub const fn wgsl_u32(source: &str, name: &str) -> u32 {
    let src = source.as_bytes();
    let name = name.as_bytes();
    let prefix = b"const ";
    let mut i = 0;
    while i + prefix.len() + name.len() < src.len() {
        if starts_with_at(src, i, prefix)
            && starts_with_at(src, i + prefix.len(), name)
            && (i == 0 || src[i - 1] == b'\n' || src[i - 1] == b' ')
        {
            let mut j = i + prefix.len() + name.len();
            // Exactly the name: the next character ends the identifier.
            if src[j] == b':' || src[j] == b' ' || src[j] == b'=' {
                while j < src.len() && src[j] != b'=' {
                    j += 1;
                }
                j += 1;
                while j < src.len() && src[j] == b' ' {
                    j += 1;
                }
                let mut value: u32 = 0;
                let mut digits = 0;
                while j < src.len() && src[j] >= b'0' && src[j] <= b'9' {
                    value = value * 10 + (src[j] - b'0') as u32;
                    digits += 1;
                    j += 1;
                }
                if digits == 0 {
                    panic!("WGSL constant is not a decimal literal");
                }
                return value;
            }
        }
        i += 1;
    }
    panic!("WGSL constant not found in shader source")
}

const fn starts_with_at(haystack: &[u8], at: usize, needle: &[u8]) -> bool {
    if at + needle.len() > haystack.len() {
        return false;
    }
    let mut k = 0;
    while k < needle.len() {
        if haystack[at + k] != needle[k] {
            return false;
        }
        k += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_constants_and_ignores_longer_names() {
        let src = "// header\nconst TILE_K: u32 = 8u;\nconst TILE: u32 = 64u;\nconst WG = 256u;\n";
        assert_eq!(wgsl_u32(src, "TILE"), 64);
        assert_eq!(wgsl_u32(src, "TILE_K"), 8);
        assert_eq!(wgsl_u32(src, "WG"), 256);
    }

    #[test]
    #[should_panic]
    fn a_missing_constant_panics() {
        wgsl_u32("const A: u32 = 1u;\n", "B");
    }
}
