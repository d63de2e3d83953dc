//! Fuzz the firmware bundle's head and manifest decoders: arbitrary bytes
//! must never panic, never allocate past the manifest cap, and a manifest
//! that decodes must decode the same from its own encoding.

#![no_main]

use ecko_image::format::{self, MAX_MANIFEST_LEN};
use ecko_image::manifest::Manifest;
use ecko_image::verify::{verify_head, Checks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = format::read_head(&mut &data[..]) {
        assert!(head.manifest.len() <= MAX_MANIFEST_LEN as usize);
        assert_eq!(&format::encode_head(&head)[..], &data[..head.payload_offset() as usize]);
        // No key is trusted: nothing gets past the signer check.
        let c = Checks {
            trust: &[],
            allow_dev_keys: false,
            hardware: None,
            installed_security_version: None,
        };
        assert!(verify_head(&mut &data[..], &c).is_err());
    }
    // The manifest decoder itself, as if its signature had verified.
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
    }
});
