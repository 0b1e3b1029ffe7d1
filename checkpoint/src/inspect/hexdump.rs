//! `inspect IMAGE --dump-memory ADDR LEN`: 16 bytes a line, with the ASCII
//! column; pages the image does not hold are one line saying so.

use crate::error::Result;
use crate::image::Image;
use std::fmt::Write;

/// Longest dump printed at once, so a typo cannot print gigabytes.
pub const MAX_DUMP: u64 = 64 << 20;

pub fn hexdump(image: &Image, pid: i32, addr: u64, len: u64) -> Result<String> {
    let len = len.min(MAX_DUMP);
    let end = addr.saturating_add(len);
    let mut out = String::new();
    for (page, data) in image.read_memory(pid, addr, len)? {
        let from = addr.max(page);
        let to = end.min(page + crate::PAGE_SIZE);
        let Some(data) = data else {
            let _ = writeln!(
                out,
                "{from:016x}  -- {:#x} bytes not captured (never touched, or not dumped) --",
                to - from
            );
            continue;
        };
        let mut line = from & !15;
        while line < to {
            let _ = write!(out, "{line:016x} ");
            let mut ascii = String::new();
            for a in line..line + 16 {
                if a < from || a >= to {
                    out.push_str("   ");
                    ascii.push(' ');
                    continue;
                }
                let b = data[(a - page) as usize];
                let _ = write!(out, " {b:02x}");
                ascii.push(if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                });
            }
            let _ = writeln!(out, "  |{ascii}|");
            line += 16;
        }
    }
    Ok(out)
}
