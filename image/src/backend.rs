//! The boot backend a command runs with (`--boot file|uboot|rauc`), as one
//! type: all three place their slot images as `slots.toml` says (files
//! beside the boot state, or partitions), through `FileBoot`.

use std::fs::File;
use std::io;

use crate::rauc::Rauc;
use crate::slots::{BootControl, BootState, Change, FileBoot, Slot, SlotError};
use crate::uboot::UbootEnv;

pub enum Backend {
    File(FileBoot),
    Uboot(UbootEnv),
    Rauc(Rauc),
}

macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Backend::File($b) => $e,
            Backend::Uboot($b) => $e,
            Backend::Rauc($b) => $e,
        }
    };
}

impl BootControl for Backend {
    type Writer = File;
    type Reader = File;

    fn tell(&self, change: Change) -> Result<(), SlotError> {
        each!(self, b => b.tell(change))
    }
    fn load(&self) -> Result<BootState, SlotError> {
        each!(self, b => b.load())
    }
    fn store(&self, s: &BootState) -> Result<(), SlotError> {
        each!(self, b => b.store(s))
    }
    fn check_writable(&self, slot: Slot, len: u64) -> Result<(), SlotError> {
        each!(self, b => b.check_writable(slot, len))
    }
    fn write_slot(&self, slot: Slot, len: u64) -> Result<File, SlotError> {
        each!(self, b => b.write_slot(slot, len))
    }
    fn finish_slot(&self, w: File) -> io::Result<()> {
        each!(self, b => b.finish_slot(w))
    }
    fn read_slot(&self, slot: Slot) -> Result<File, SlotError> {
        each!(self, b => b.read_slot(slot))
    }
}
