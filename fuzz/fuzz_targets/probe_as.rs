//! A header probed as a given format whatever its magic bytes say (the first byte picks the
//! format), so each decoder's header parser is reached without the fuzzer finding the magic.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    kiln_core::image_probe::probe_as(bytes);
});
