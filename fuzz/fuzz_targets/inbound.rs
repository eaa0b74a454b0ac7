//! Fuzzes resocket's inbound path: frame bytes → reassembly → UTF-8 → acked protocol →
//! decode. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run inbound` (see the README).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    resocket::fuzzing::inbound(data);
});
