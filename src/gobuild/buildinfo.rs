//! Go build info read straight from a binary, ELF or wasm alike.
//!
//! The linker leaves a blob starting `\xff Go buildinf:` in the binary's data: a
//! 32-byte header, then (for Go >= 1.18) the Go version and the module info as
//! varint-length-prefixed strings. The module info is framed by 16-byte sentinels.
//! In an ELF binary the blob is the `.go.buildinfo` section, found through the section
//! table without reading the rest of the file; a `.wasm` has no such table for it, so
//! there the bytes are scanned (which works for every format, and is the fallback).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_SIZE: usize = 32;
/// Flag bit: version and module info are stored inline after the header.
const FLAG_INLINE: u8 = 0x2;
/// The most a build-info blob is read for (module lists are far smaller).
const BLOB_LIMIT: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BuildInfoError {
    #[error("reading {path}")]
    Io {
        path: String,
        #[source]
        cause: io::Error,
    },
    #[error("{path} has no Go build info (was it built by Go 1.18 or newer?)")]
    NotFound { path: String },
}

/// A module as Go records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Module {
    pub path: String,
    pub version: String,
    /// The go.sum hash, `h1:<base64 sha256>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<Box<Module>>,
}

/// What `go version -m` prints, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    pub go_version: String,
    /// The main package's import path.
    pub path: String,
    pub main: Module,
    pub deps: Vec<Module>,
    /// `-trimpath=true`, `GOOS=wasip1`, `vcs.revision=…` and the like, in order.
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// Reads the build info of the binary at `path`, scanning in chunks so a large
    /// binary is never held whole in memory. ELF has the versioned header; wasm has
    /// only the framed module info, and then `go_version` is empty (the caller knows
    /// which Go built it).
    pub fn read(path: &Path) -> Result<BuildInfo, BuildInfoError> {
        let io_err = |cause| BuildInfoError::Io {
            path: path.display().to_string(),
            cause,
        };
        let mut file = File::open(path).map_err(io_err)?;
        if let Some(info) = elf_section(&mut file, b".go.buildinfo")
            .map_err(io_err)?
            .and_then(|blob| parse_blob(&blob))
        {
            return Ok(info);
        }
        if let Some(info) = scan(&mut file, MAGIC, parse_blob).map_err(io_err)? {
            return Ok(info);
        }
        let framed = |blob: &[u8]| {
            let end = find(&blob[SENTINEL_START.len()..], &SENTINEL_END)?;
            let text = std::str::from_utf8(&blob[SENTINEL_START.len()..SENTINEL_START.len() + end])
                .ok()?;
            parse_modinfo("", text)
        };
        scan(&mut file, &SENTINEL_START, framed)
            .map_err(io_err)?
            .ok_or_else(|| BuildInfoError::NotFound {
                path: path.display().to_string(),
            })
    }
}

/// Go's modinfo sentinels (cmd/go/internal/modload).
const SENTINEL_START: [u8; 16] = [
    0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6,
];
const SENTINEL_END: [u8; 16] = [
    0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2,
];

/// The first BLOB_LIMIT bytes of the ELF section called `name`, or None when the file
/// is not ELF or has no such section (or its tables do not add up).
fn elf_section(file: &mut File, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut ident = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    if file.read(&mut ident)? < 52 || &ident[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let (wide, big) = (ident[4] == 2, ident[5] == 2);
    let num = |bytes: &[u8]| -> u64 {
        let fold = |acc: u64, b: &u8| (acc << 8) | u64::from(*b);
        if big {
            bytes.iter().fold(0, fold)
        } else {
            bytes.iter().rev().fold(0, fold)
        }
    };
    // e_shoff, e_shentsize, e_shnum, e_shstrndx.
    let (shoff, entsize, count, names) = if wide {
        (
            num(&ident[0x28..0x30]),
            num(&ident[0x3a..0x3c]),
            num(&ident[0x3c..0x3e]),
            num(&ident[0x3e..0x40]),
        )
    } else {
        (
            num(&ident[0x20..0x24]),
            num(&ident[0x2e..0x30]),
            num(&ident[0x30..0x32]),
            num(&ident[0x32..0x34]),
        )
    };
    if shoff == 0
        || count == 0
        || count > 4096
        || names >= count
        || entsize < if wide { 64 } else { 40 }
    {
        return Ok(None);
    }
    let mut table = vec![0u8; (entsize * count) as usize];
    file.seek(SeekFrom::Start(shoff))?;
    if file.read_exact(&mut table).is_err() {
        return Ok(None);
    }
    // (sh_name, sh_offset, sh_size) of section `i`.
    let header = |i: u64| {
        let h = &table[(i * entsize) as usize..];
        if wide {
            (num(&h[0..4]), num(&h[24..32]), num(&h[32..40]))
        } else {
            (num(&h[0..4]), num(&h[16..20]), num(&h[20..24]))
        }
    };
    let read_at = |file: &mut File, offset: u64, size: u64| -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(offset))?;
        file.by_ref()
            .take(size.min(BLOB_LIMIT as u64))
            .read_to_end(&mut data)?;
        Ok(data)
    };
    let (_, strings_at, strings_size) = header(names);
    let strings = read_at(file, strings_at, strings_size)?;
    for i in 0..count {
        let (name_at, offset, size) = header(i);
        let named = strings
            .get(name_at as usize..)
            .and_then(|s| s.split(|b| *b == 0).next());
        if named == Some(name) {
            return read_at(file, offset, size).map(Some);
        }
    }
    Ok(None)
}

/// Finds each occurrence of `needle` in chunks and hands up to BLOB_LIMIT bytes from
/// there to `parse`, until one parses.
fn scan(
    file: &mut File,
    needle: &[u8],
    parse: impl Fn(&[u8]) -> Option<BuildInfo>,
) -> io::Result<Option<BuildInfo>> {
    file.seek(SeekFrom::Start(0))?;
    let mut offset = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize;
    loop {
        let n = file.read(&mut buf[carry..])?;
        if n == 0 {
            return Ok(None);
        }
        let filled = carry + n;
        let mut from = 0;
        while let Some(i) = find(&buf[from..filled], needle) {
            let at = offset + (from + i) as u64;
            let resume = file.stream_position()?;
            file.seek(SeekFrom::Start(at))?;
            let mut blob = Vec::new();
            file.by_ref()
                .take(BLOB_LIMIT as u64)
                .read_to_end(&mut blob)?;
            file.seek(SeekFrom::Start(resume))?;
            if let Some(info) = parse(&blob) {
                return Ok(Some(info));
            }
            from += i + 1;
        }
        // Keep a tail shorter than the needle: a match may straddle two chunks.
        let keep = (needle.len() - 1).min(filled);
        buf.copy_within(filled - keep..filled, 0);
        offset += (filled - keep) as u64;
        carry = keep;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_blob(blob: &[u8]) -> Option<BuildInfo> {
    if blob.len() < HEADER_SIZE || blob[MAGIC.len() + 1] & FLAG_INLINE == 0 {
        return None;
    }
    let rest = &blob[HEADER_SIZE..];
    let (version, rest) = read_string(rest)?;
    let (modinfo, _) = read_string(rest)?;
    if !version.starts_with(b"go") && !version.starts_with(b"devel") {
        return None;
    }
    // Module info sits between two 16-byte sentinels; the last line ends just before the second.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        return None;
    };
    parse_modinfo(
        std::str::from_utf8(version).ok()?,
        std::str::from_utf8(modinfo).ok()?,
    )
}

fn read_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = read_uvarint(data)?;
    let len = usize::try_from(len).ok()?;
    let end = used.checked_add(len)?;
    (end <= data.len()).then(|| (&data[used..end], &data[end..]))
}

fn read_uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Parses the text of runtime/debug.BuildInfo.String().
fn parse_modinfo(go_version: &str, text: &str) -> Option<BuildInfo> {
    let mut info = BuildInfo {
        go_version: go_version.to_string(),
        path: String::new(),
        main: Module {
            path: String::new(),
            version: String::new(),
            sum: None,
            replace: None,
        },
        deps: Vec::new(),
        settings: Vec::new(),
    };
    let module = |fields: &[&str]| Module {
        path: fields.first().copied().unwrap_or_default().to_string(),
        version: fields.get(1).copied().unwrap_or_default().to_string(),
        sum: fields
            .get(2)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string()),
        replace: None,
    };
    let mut last_is_main = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('\t') else {
            continue;
        };
        let fields: Vec<&str> = value.split('\t').collect();
        match key {
            "path" => info.path = value.to_string(),
            "mod" => {
                info.main = module(&fields);
                last_is_main = true;
            }
            "dep" => {
                info.deps.push(module(&fields));
                last_is_main = false;
            }
            "=>" => {
                let replacement = Some(Box::new(module(&fields)));
                match (last_is_main, info.deps.last_mut()) {
                    (false, Some(dep)) => dep.replace = replacement,
                    _ => info.main.replace = replacement,
                }
            }
            "build" => {
                let (k, v) = value.split_once('=')?;
                info.settings.push((k.to_string(), unquote(v)));
            }
            _ => {}
        }
    }
    (!info.path.is_empty()).then_some(info)
}

/// Go quotes a setting value with strconv.Quote when it has spaces or quotes.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_string())
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(8);
        b.push(FLAG_INLINE);
        b.resize(HEADER_SIZE, 0);
        for s in [version.as_bytes().to_vec(), {
            let mut m = vec![0x30u8; 16];
            m.extend_from_slice(modinfo.as_bytes());
            m.extend_from_slice(&[0xf9; 16]);
            m
        }] {
            let mut len = s.len();
            loop {
                let byte = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    b.push(byte);
                    break;
                }
                b.push(byte | 0x80);
            }
            b.extend_from_slice(&s);
        }
        b
    }

    #[test]
    fn parses_a_blob_with_deps_replacements_and_settings() {
        let modinfo = "path\texample.com/app/cmd/x\nmod\texample.com/app\t(devel)\t\n\
dep\tgithub.com/google/uuid\tv1.6.0\th1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n\
dep\texample.com/old\tv1.0.0\n=>\texample.com/new\tv1.1.0\th1:abc=\n\
build\t-trimpath=true\nbuild\t-ldflags=\"-s -w\"\nbuild\tGOOS=wasip1\n";
        let info = parse_blob(&blob("go1.26.8", modinfo)).expect("parses");
        assert_eq!(info.go_version, "go1.26.8");
        assert_eq!(info.path, "example.com/app/cmd/x");
        assert_eq!(info.main.version, "(devel)");
        assert_eq!(info.deps.len(), 2);
        assert_eq!(
            info.deps[0].sum.as_deref(),
            Some("h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=")
        );
        assert_eq!(
            info.deps[1].replace.as_ref().unwrap().path,
            "example.com/new"
        );
        assert!(info.settings.contains(&("-ldflags".into(), "-s -w".into())));
        assert!(info.settings.contains(&("GOOS".into(), "wasip1".into())));
    }

    #[test]
    fn finds_the_blob_across_chunk_boundaries_and_skips_decoys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        let mut bytes = vec![0u8; (1 << 20) - 5];
        bytes.extend_from_slice(MAGIC); // a decoy: the string as a constant
        bytes.extend_from_slice(&[0u8; 40]);
        bytes.extend(blob("go1.22.1", "path\tx\nmod\tx\t(devel)\t\n"));
        std::fs::write(&path, &bytes).unwrap();
        let info = BuildInfo::read(&path).unwrap();
        assert_eq!(info.path, "x");
        assert_eq!(info.go_version, "go1.22.1");

        std::fs::write(&path, b"no build info here").unwrap();
        assert!(matches!(
            BuildInfo::read(&path),
            Err(BuildInfoError::NotFound { .. })
        ));
    }

    #[test]
    fn an_elf_binary_is_read_from_its_go_buildinfo_section() {
        // A decoy blob early in the file that a scan would find first, then the
        // section the table names.
        let decoy = blob("go1.0.0", "path\tdecoy\nmod\tdecoy\t(devel)\t\n");
        let real = blob("go1.22.1", "path\treal\nmod\treal\t(devel)\t\n");
        let names = b"\0.shstrtab\0.go.buildinfo\0";
        let mut file = vec![0u8; 64];
        file.extend_from_slice(&decoy);
        let names_at = file.len() as u64;
        file.extend_from_slice(names);
        let real_at = file.len() as u64;
        file.extend_from_slice(&real);
        let table_at = file.len() as u64;
        let section = |name: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        file.extend(section(0, 0, 0));
        file.extend(section(1, names_at, names.len() as u64));
        file.extend(section(11, real_at, real.len() as u64));
        file[..4].copy_from_slice(b"\x7fELF");
        file[4] = 2; // 64-bit
        file[5] = 1; // little-endian
        file[0x28..0x30].copy_from_slice(&table_at.to_le_bytes());
        file[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        file[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        file[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, &file).unwrap();
        let info = BuildInfo::read(&path).unwrap();
        assert_eq!(
            (info.path.as_str(), info.go_version.as_str()),
            ("real", "go1.22.1")
        );
    }
}
