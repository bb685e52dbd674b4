//! Shared helpers for the differential tests.
#![allow(dead_code)]

/// Small deterministic generator (SplitMix64), so tests need no RNG crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn u8(&mut self) -> u8 {
        self.next_u64() as u8
    }
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// How the test fills A and B.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    Random,
    /// A = 255, B = −128: the most negative products.
    MaxNegative,
    /// A = 255, B = 127.
    MaxPositive,
    /// A = 0 everywhere (with a non-zero zero point this is the most positive correction).
    ZeroA,
    /// Every element of A and B equal.
    AllEqual(u8, i8),
    /// Alternating extremes.
    Checker,
    /// A = 255, B alternating ±64: the extremes of 7-bit weights (AVX2's `vpmaddubsw` form).
    SevenBitExtremes,
    /// Random A, B uniform in [−64, 64].
    SevenBitRandom,
}

pub fn fill(f: Fill, m: usize, k: usize, n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<i8>) {
    let a = (0..m * k)
        .map(|i| match f {
            Fill::Random => rng.u8(),
            Fill::MaxNegative | Fill::MaxPositive | Fill::SevenBitExtremes => 255,
            Fill::SevenBitRandom => rng.u8(),
            Fill::ZeroA => 0,
            Fill::AllEqual(v, _) => v,
            Fill::Checker => {
                if i % 2 == 0 {
                    255
                } else {
                    0
                }
            }
        })
        .collect();
    let b = (0..k * n)
        .map(|i| match f {
            Fill::Random => rng.i8(),
            Fill::MaxNegative | Fill::ZeroA => -128,
            Fill::MaxPositive => 127,
            Fill::AllEqual(_, v) => v,
            Fill::Checker => {
                if i % 3 == 0 {
                    -128
                } else {
                    127
                }
            }
            Fill::SevenBitExtremes => {
                if (i / 2) % 2 == 0 {
                    64
                } else {
                    -64
                }
            }
            Fill::SevenBitRandom => (rng.below(129) as i32 - 64) as i8,
        })
        .collect();
    (a, b)
}
