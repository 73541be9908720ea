//! A zip archive writer, STORE only (no compression), with CRC-32: enough
//! for the bulk QR zip (SVG files and a CSV, which the host keeps as one
//! file), in pure Rust with no dependency, so it builds for wasm32-wasip2.
//!
//! The format is PKWARE's APPNOTE.TXT: per file a local header and the
//! bytes, then the central directory and its end record. No ZIP64: an
//! archive stays under 4 GiB and 65,535 entries (the host's file limit is
//! far below), and [`ZipWriter::add`] refuses past either.

/// Why an entry was not added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipError {
    /// The archive would pass 4 GiB or 65,535 entries (ZIP64 is not
    /// written).
    TooLarge,
    /// The name is empty, longer than 65,535 bytes, absolute, or has a
    /// `..` part or a backslash.
    BadName(String),
}

impl std::fmt::Display for ZipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZipError::TooLarge => f.write_str("the zip archive would pass 4 GiB or 65,535 files"),
            ZipError::BadName(name) => write!(f, "`{name}` is not a file name for a zip archive"),
        }
    }
}

/// The CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) table,
/// computed at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// The CRC-32 of `bytes`, as zip (and gzip, PNG) use it.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, byte| {
        CRC_TABLE[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// A calendar day as MS-DOS date bits (years 1980 to 2107; earlier days
/// are written as 1980-01-01), for the entries' modification time
/// (midnight).
pub fn dos_date(year: i64, month: i64, day: i64) -> u16 {
    if !(1980..=2107).contains(&year) {
        return (1 << 5) | 1;
    }
    (((year - 1980) as u16) << 9) | ((month as u16 & 0x0f) << 5) | (day as u16 & 0x1f)
}

struct Entry {
    name: Vec<u8>,
    crc: u32,
    size: u32,
    offset: u32,
}

/// Writes a zip archive into memory, one stored file at a time.
pub struct ZipWriter {
    out: Vec<u8>,
    entries: Vec<Entry>,
    date: u16,
}

/// Version 2.0 of the format: what readers need for stored files in
/// folders with UTF-8 names.
const VERSION: u16 = 20;
/// General purpose flag bit 11: the name is UTF-8.
const UTF8_NAMES: u16 = 1 << 11;

impl ZipWriter {
    /// An empty archive whose entries carry `dos_date` ([`dos_date`]).
    pub fn new(dos_date: u16) -> Self {
        Self {
            out: Vec::new(),
            entries: Vec::new(),
            date: dos_date,
        }
    }

    /// Adds a file `name` (a relative path with `/` between parts) holding
    /// `bytes`, stored as is.
    ///
    /// # Errors
    ///
    /// [`ZipError::BadName`] for a name a reader could write outside its
    /// folder, [`ZipError::TooLarge`] past the format's limits without
    /// ZIP64; the archive is unchanged then.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<(), ZipError> {
        let bad = name.is_empty()
            || name.len() > usize::from(u16::MAX)
            || name.starts_with('/')
            || name.contains('\\')
            || name.contains('\0')
            || name.split('/').any(|part| part == ".." || part.is_empty());
        if bad {
            return Err(ZipError::BadName(name.chars().take(80).collect()));
        }
        let size = u32::try_from(bytes.len()).map_err(|_| ZipError::TooLarge)?;
        let offset = u32::try_from(self.out.len()).map_err(|_| ZipError::TooLarge)?;
        // This entry and its central record must still fit below 4 GiB.
        let after = self.out.len() as u64
            + 30
            + name.len() as u64
            + u64::from(size)
            + self
                .entries
                .iter()
                .map(|e| 46 + e.name.len() as u64)
                .sum::<u64>()
            + 46
            + name.len() as u64
            + 22;
        if self.entries.len() >= usize::from(u16::MAX) || after > u64::from(u32::MAX) {
            return Err(ZipError::TooLarge);
        }
        let crc = crc32(bytes);
        let name_len = name.len() as u16;
        let out = &mut self.out;
        put32(out, 0x0403_4b50);
        put16(out, VERSION);
        put16(out, UTF8_NAMES);
        put16(out, 0); // stored
        put16(out, 0); // time: midnight
        put16(out, self.date);
        put32(out, crc);
        put32(out, size); // compressed size
        put32(out, size);
        put16(out, name_len);
        put16(out, 0); // no extra field
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(bytes);
        self.entries.push(Entry {
            name: name.as_bytes().to_vec(),
            crc,
            size,
            offset,
        });
        Ok(())
    }

    /// How many bytes the archive holds so far (without its directory).
    pub fn written(&self) -> usize {
        self.out.len()
    }

    /// The finished archive: the files, the central directory, its end.
    pub fn finish(self) -> Vec<u8> {
        let Self {
            mut out,
            entries,
            date,
        } = self;
        // `add` kept every offset and the total below 4 GiB and the count
        // below 65,535, so these conversions hold.
        let directory_start = out.len() as u32;
        for entry in &entries {
            put32(&mut out, 0x0201_4b50);
            put16(&mut out, VERSION); // made by: MS-DOS attributes, 2.0
            put16(&mut out, VERSION);
            put16(&mut out, UTF8_NAMES);
            put16(&mut out, 0);
            put16(&mut out, 0);
            put16(&mut out, date);
            put32(&mut out, entry.crc);
            put32(&mut out, entry.size);
            put32(&mut out, entry.size);
            put16(&mut out, entry.name.len() as u16);
            put16(&mut out, 0); // extra
            put16(&mut out, 0); // comment
            put16(&mut out, 0); // disk
            put16(&mut out, 0); // internal attributes
            put32(&mut out, 0); // external attributes
            put32(&mut out, entry.offset);
            out.extend_from_slice(&entry.name);
        }
        let directory_size = out.len() as u32 - directory_start;
        let count = entries.len() as u16;
        put32(&mut out, 0x0605_4b50);
        put16(&mut out, 0);
        put16(&mut out, 0);
        put16(&mut out, count);
        put16(&mut out, count);
        put32(&mut out, directory_size);
        put32(&mut out, directory_start);
        put16(&mut out, 0); // no comment
        out
    }
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    /// Reads an archive the way an unzip tool does: from the end record to
    /// the central directory to each local header, checking each CRC.
    fn read(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
        let end = zip.len() - 22;
        assert_eq!(u32_at(zip, end), 0x0605_4b50, "end record");
        let count = usize::from(u16_at(zip, end + 10));
        let mut at = u32_at(zip, end + 16) as usize;
        assert_eq!(at + u32_at(zip, end + 12) as usize, end, "directory size");
        let mut files = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(zip, at), 0x0201_4b50, "central header");
            let crc = u32_at(zip, at + 16);
            let size = u32_at(zip, at + 20) as usize;
            let name_len = usize::from(u16_at(zip, at + 28));
            let offset = u32_at(zip, at + 42) as usize;
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(zip, offset), 0x0403_4b50, "local header");
            assert_eq!(u16_at(zip, offset + 8), 0, "stored");
            assert_eq!(u32_at(zip, offset + 14), crc);
            let local_name_len = usize::from(u16_at(zip, offset + 26));
            let data_at = offset + 30 + local_name_len + usize::from(u16_at(zip, offset + 28));
            let data = zip[data_at..data_at + size].to_vec();
            assert_eq!(crc32(&data), crc, "{name}");
            files.push((name, data));
            at += 46 + name_len;
        }
        files
    }

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn an_archive_reads_back_file_by_file() {
        let mut zip = ZipWriter::new(dos_date(2026, 3, 1));
        assert_eq!(zip.written(), 0);
        zip.add("C-000001.svg", b"<svg/>").unwrap();
        zip.add("manifest.csv", b"card_number\nC-000001\n").unwrap();
        zip.add("empty.txt", b"").unwrap();
        let bytes = zip.finish();
        assert!(bytes.starts_with(b"PK\x03\x04"));
        let files = read(&bytes);
        assert_eq!(
            files,
            vec![
                ("C-000001.svg".to_owned(), b"<svg/>".to_vec()),
                (
                    "manifest.csv".to_owned(),
                    b"card_number\nC-000001\n".to_vec()
                ),
                ("empty.txt".to_owned(), Vec::new()),
            ]
        );
        // 2026-03-01: (46 << 9) | (3 << 5) | 1.
        assert_eq!(u16_at(&bytes, 12), (46 << 9) | (3 << 5) | 1);
        assert_eq!(dos_date(1970, 1, 1), (1 << 5) | 1);
        let empty = ZipWriter::new(0).finish();
        assert_eq!(empty.len(), 22);
        assert!(read(&empty).is_empty());
    }

    #[test]
    fn names_that_leave_the_folder_are_refused() {
        let mut zip = ZipWriter::new(0);
        for name in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\b",
            "a//b",
            "nul\0",
        ] {
            assert!(
                matches!(zip.add(name, b"x"), Err(ZipError::BadName(_))),
                "{name:?}"
            );
        }
        assert_eq!(zip.written(), 0);
        assert!(zip.add("cards/C-1.svg", b"x").is_ok());
    }
}
