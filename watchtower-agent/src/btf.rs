//! Just enough of the kernel's BTF to find field offsets in `struct task_struct`
//! (the parent's pid and the exit code), which the eBPF programs read without
//! CO-RE relocation. Format: linux/Documentation/bpf/btf.rst.

use thiserror::Error;
use watchtower_common::TaskOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic or header)")]
    BadHeader,
    #[error("BTF type section is truncated at type {0}")]
    Truncated(u32),
    #[error("BTF type kind {kind} at type {id} is unknown")]
    UnknownKind { id: u32, kind: u32 },
    #[error("struct {0} not found in BTF")]
    NoStruct(String),
}

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Composite { name_off: u32, members: Vec<Member> },
    Alias(u32),
    Other,
}

/// Parsed BTF types and strings.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = u32_at(data, 4).ok_or(BtfError::BadHeader)? as usize;
        let type_off = u32_at(data, 8).ok_or(BtfError::BadHeader)? as usize;
        let type_len = u32_at(data, 12).ok_or(BtfError::BadHeader)? as usize;
        let str_off = u32_at(data, 16).ok_or(BtfError::BadHeader)? as usize;
        let str_len = u32_at(data, 20).ok_or(BtfError::BadHeader)? as usize;
        let types_data = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::BadHeader)?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::BadHeader)?
            .to_vec();
        // Type id 0 is void.
        let mut types = vec![Type::Other];
        let mut at = 0usize;
        while at < types_data.len() {
            let id = types.len() as u32;
            let name_off = u32_at(types_data, at).ok_or(BtfError::Truncated(id))?;
            let info = u32_at(types_data, at + 4).ok_or(BtfError::Truncated(id))?;
            let size_or_type = u32_at(types_data, at + 8).ok_or(BtfError::Truncated(id))?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 != 0;
            let (extra, parsed) = match kind {
                // INT, VAR, DECL_TAG: one u32; ARRAY: 12 bytes.
                1 | 14 | 17 => (4, Type::Other),
                3 => (12, Type::Other),
                // PTR, FWD, FUNC, FLOAT, TYPE_TAG: nothing more.
                2 | 7 | 12 | 16 | 18 => (0, Type::Other),
                // TYPEDEF, VOLATILE, CONST, RESTRICT: point at another type.
                8..=11 => (0, Type::Alias(size_or_type)),
                4 | 5 => {
                    let mut members = Vec::with_capacity(vlen);
                    for m in 0..vlen {
                        let base = at + m * 12;
                        let m_name = u32_at(types_data, base).ok_or(BtfError::Truncated(id))?;
                        let m_type = u32_at(types_data, base + 4).ok_or(BtfError::Truncated(id))?;
                        let m_off = u32_at(types_data, base + 8).ok_or(BtfError::Truncated(id))?;
                        let bit_offset = if kind_flag { m_off & 0x00ff_ffff } else { m_off };
                        members.push(Member {
                            name_off: m_name,
                            type_id: m_type,
                            bit_offset,
                        });
                    }
                    (vlen * 12, Type::Composite { name_off, members })
                }
                // ENUM, FUNC_PROTO: 8 bytes per entry; DATASEC, ENUM64: 12.
                6 | 13 => (vlen * 8, Type::Other),
                15 | 19 => (vlen * 12, Type::Other),
                other => return Err(BtfError::UnknownKind { id, kind: other }),
            };
            at += extra;
            if at > types_data.len() {
                return Err(BtfError::Truncated(id));
            }
            types.push(parsed);
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, off: u32) -> &str {
        let start = off as usize;
        let Some(rest) = self.strings.get(start..) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias(next) => id = *next,
                other => return Some(other),
            }
        }
        None
    }

    /// Byte offset of `field` in the struct or union named `name`, looking into
    /// anonymous nested structs and unions.
    pub fn field_offset(&self, name: &str, field: &str) -> Result<Option<u32>, BtfError> {
        let members = self
            .types
            .iter()
            .find_map(|t| match t {
                Type::Composite { name_off, members }
                    if self.name(*name_off) == name && !members.is_empty() =>
                {
                    Some(members)
                }
                _ => None,
            })
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))?;
        Ok(self.find_member(members, field, 0, 0).map(|bits| bits / 8))
    }

    fn find_member(&self, members: &[Member], field: &str, base_bits: u32, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in members {
            let name = self.name(m.name_off);
            if name == field {
                return Some(base_bits + m.bit_offset);
            }
            if name.is_empty()
                && let Some(Type::Composite { members: inner, .. }) = self.resolve(m.type_id)
                && let Some(found) = self.find_member(inner, field, base_bits + m.bit_offset, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }
}

/// `task_struct` offsets from this kernel's BTF; fields not found stay 0 (unknown).
pub fn task_offsets(btf: &Btf) -> Result<TaskOffsets, BtfError> {
    Ok(TaskOffsets {
        real_parent: btf.field_offset("task_struct", "real_parent")?.unwrap_or(0),
        tgid: btf.field_offset("task_struct", "tgid")?.unwrap_or(0),
        exit_code: btf.field_offset("task_struct", "exit_code")?.unwrap_or(0),
        loginuid: btf.field_offset("task_struct", "loginuid")?.unwrap_or(0),
        sessionid: btf.field_offset("task_struct", "sessionid")?.unwrap_or(0),
        cred: btf.field_offset("task_struct", "cred")?.unwrap_or(0),
        cred_euid: btf.field_offset("cred", "euid")?.unwrap_or(0),
        mm: btf.field_offset("task_struct", "mm")?.unwrap_or(0),
        mm_env_start: btf.field_offset("mm_struct", "env_start")?.unwrap_or(0),
        mm_env_end: btf.field_offset("mm_struct", "env_end")?.unwrap_or(0),
        pad: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct s { int a; union { int b; int c; }; int d; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0c\0d\0int\0".to_vec();
        let name = |s: &str| -> u32 {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int
        push(&[name("int"), 1 << 24, 4, 32]);
        // 2: anonymous union { int b; int c; }
        push(&[0, (5 << 24) | 2, 4, name("b"), 1, 0, name("c"), 1, 0]);
        // 3: struct s { int a @0; union @32 bits; int d @64 bits }
        push(&[
            name("s"),
            (4 << 24) | 3,
            12,
            name("a"),
            1,
            0,
            0,
            2,
            32,
            name("d"),
            1,
            64,
        ]);
        // 4: const s (an alias)
        push(&[0, 10 << 24, 3]);
        let mut out = Vec::new();
        out.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.field_offset("s", "a").unwrap(), Some(0));
        assert_eq!(btf.field_offset("s", "c").unwrap(), Some(4));
        assert_eq!(btf.field_offset("s", "d").unwrap(), Some(8));
        assert_eq!(btf.field_offset("s", "zz").unwrap(), None);
        assert_eq!(
            btf.field_offset("nope", "a"),
            Err(BtfError::NoStruct("nope".into()))
        );
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(
            Btf::parse(b"hello world, not btf at all").err(),
            Some(BtfError::BadHeader)
        );
        let mut blob = sample();
        // Claim a longer type section than there is.
        blob[12] = 0xff;
        assert!(Btf::parse(&blob).is_err());
    }

    #[test]
    fn this_kernels_task_struct() {
        let Ok(data) = std::fs::read(VMLINUX_BTF) else {
            eprintln!("SKIP: {VMLINUX_BTF} not readable here");
            return;
        };
        let btf = Btf::parse(&data).expect("vmlinux BTF parses");
        let offsets = task_offsets(&btf).unwrap();
        assert_ne!(offsets.real_parent, 0);
        assert_ne!(offsets.tgid, 0);
        assert_ne!(offsets.exit_code, 0);
        assert_ne!(offsets.loginuid, 0);
        assert_ne!(offsets.sessionid, 0);
        assert_ne!(offsets.cred, 0);
        assert_ne!(offsets.cred_euid, 0);
        assert_ne!(offsets.mm, 0);
        assert!(offsets.mm_env_end > offsets.mm_env_start && offsets.mm_env_start > 0);
        assert_ne!(offsets.cred, offsets.loginuid);
    }
}
