//! Choosing a partition the way the real systems do, so keys land where a
//! Kafka or Kinesis producer would have put them.

/// Kafka's default partitioner: `toPositive(murmur2(key)) % partitions`.
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kinesis: the MD5 of the partition key as a 128-bit hash key, and shards
/// owning equal slices of the hash key space.
pub fn kinesis_shard(partition_key: &str, shards: u32) -> u32 {
    use md5::{Digest, Md5};
    let hash = u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into());
    // Scale the top 64 bits: shard i owns [i, i+1) × 2^128 / shards.
    (((hash >> 64) * u128::from(shards)) >> 64) as u32
}

/// Kafka's murmur2 (seed 0x9747b28c), as in its Java client.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own UtilsTest (murmur2 of these strings, as signed ints).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
    }

    #[test]
    fn shards_split_the_hash_space_evenly() {
        let mut seen = [0u32; 4];
        for i in 0..4000 {
            seen[kinesis_shard(&format!("key-{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(kinesis_shard("anything", 1), 0);
        assert!(kafka_partition(b"k", 3) < 3);
    }
}
