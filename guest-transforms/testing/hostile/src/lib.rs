//! A transform that misbehaves when a record asks it to. Each record's value is
//! a command; anything else is echoed back. Used by the host's sandbox tests.

use sluice_guest::{Descriptor, Output, Record, Reject, Transform};

pub struct Hostile;

impl Transform for Hostile {
    const DESCRIPTOR: Descriptor = Descriptor { name: "hostile", version: "0.1.0", input_kind: "any", output_kind: "any" };

    fn transform(record: &Record<'_>, out: &mut Output) -> Result<(), Reject> {
        // A command may also come as a JSON string (`"panic"`), as golden samples send it.
        let command = record.value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(record.value);
        match command {
            b"loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(3));
                }
            }
            b"alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"panic" => panic!("hostile guest panicked on purpose"),
            b"open" => match std::fs::read("/etc/passwd") {
                Ok(bytes) => out.emit(|b| b.extend_from_slice(format!("read {} bytes", bytes.len()).as_bytes())),
                Err(e) => return Err(Reject(format!("open failed: {e}"))),
            },
            b"socket" => match std::net::TcpStream::connect("127.0.0.1:22") {
                Ok(_) => out.emit(|b| b.extend_from_slice(b"connected")),
                Err(e) => return Err(Reject(format!("connect failed: {e}"))),
            },
            b"env" => {
                let n = std::env::vars().count();
                out.emit(|b| b.extend_from_slice(format!("{n} env vars").as_bytes()));
            }
            b"clock" => {
                let t = std::time::SystemTime::now();
                out.emit(|b| b.extend_from_slice(format!("{t:?}").as_bytes()));
            }
            b"reject" => return Err(Reject("rejected on request".into())),
            _ => out.emit(|b| b.extend_from_slice(record.value)),
        }
        Ok(())
    }
}

sluice_guest::export_transform!(Hostile);
