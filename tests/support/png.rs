//! A tiny PNG encoder for tests: uncompressed (stored) deflate blocks, so it needs no zlib.
//! The node loops of the tests send these as "last rendered" previews.

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An RGB PNG of `w`×`h` whose pixels `pixel(x, y)` gives.
pub fn png(w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A "rendered frame": a sky-to-ground gradient with a sun that moves with `frame`.
#[allow(dead_code)]
pub fn frame(frame: u32, w: u32, h: u32) -> Vec<u8> {
    let sun_x = (frame * 13 % w) as i64;
    let sun_y = (h / 3) as i64;
    png(w, h, |x, y| {
        let t = y as f32 / h as f32;
        let (dx, dy) = (x as i64 - sun_x, y as i64 - sun_y);
        if dx * dx + dy * dy < (h as i64 / 8).pow(2) {
            return [255, 214, 120];
        }
        if t > 0.7 {
            let g = (60.0 + 80.0 * (1.0 - t)) as u8;
            return [g / 3, g, g / 2];
        }
        [
            (40.0 + 180.0 * t) as u8,
            (70.0 + 100.0 * t) as u8,
            (150.0 + 60.0 * t) as u8,
        ]
    })
}
