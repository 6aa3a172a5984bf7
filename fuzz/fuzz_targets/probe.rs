//! An upload's first bytes, as the API sees them: sniffed, then its header probed.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    kiln_core::image_probe::probe(bytes);
});
