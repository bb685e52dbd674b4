//! A built-in text corpus with a known entropy rate, so a language model's perplexity can be
//! compared with the best any model could reach.
//!
//! [`MarkovCorpus`] is a first-order Markov chain over words: a small English-like grammar
//! (determiner → adjectives → noun → verb or preposition → …, sentences ending in a period)
//! whose word choices within each part of speech depend on the previous word through fixed
//! seeded weights. Text is rendered as lower-case words separated by spaces, with `".\n"`
//! closing a sentence. The rendering is uniquely decodable, so the byte stream carries exactly
//! the chain's information: its entropy rate per byte is the chain's entropy rate per word
//! divided by the mean number of bytes a word adds, both under the stationary distribution
//! (computed exactly by power iteration). [`MarkovCorpus::perplexity_floor`] is `exp` of that
//! rate in nats: the perplexity per byte of the true model, below which no model can go on
//! average.
//!
//! ```
//! use ember_models::MarkovCorpus;
//!
//! let corpus = MarkovCorpus::english_like(7);
//! let text = corpus.generate(2_000, 1);
//! assert!(text.len() >= 2_000 && text.contains(".\n"));
//! let floor = corpus.perplexity_floor();
//! assert!(floor > 1.0 && floor < 4.0, "{floor}");
//! ```

/// Parts of speech of the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pos {
    Det,
    Adj,
    Noun,
    Verb,
    Prep,
    End,
}

const WORDS: &[(Pos, &[&str])] = &[
    (Pos::Det, &["the", "a", "every", "one", "this"]),
    (Pos::Adj, &["small", "quick", "red", "old", "quiet", "bright", "tiny", "clever"]),
    (Pos::Noun, &["model", "student", "teacher", "cat", "river", "machine", "lamp", "garden", "robot", "bird"]),
    (Pos::Verb, &["learns", "sees", "follows", "builds", "holds", "finds", "copies", "watches"]),
    (Pos::Prep, &["near", "under", "with", "beside", "behind"]),
    (Pos::End, &["."]),
];

/// Probability of the next part of speech given the current one.
fn pos_transitions(p: Pos) -> &'static [(Pos, f64)] {
    match p {
        Pos::Det => &[(Pos::Adj, 0.4), (Pos::Noun, 0.6)],
        Pos::Adj => &[(Pos::Adj, 0.15), (Pos::Noun, 0.85)],
        Pos::Noun => &[(Pos::Verb, 0.5), (Pos::Prep, 0.2), (Pos::End, 0.3)],
        Pos::Verb => &[(Pos::Det, 0.8), (Pos::Prep, 0.2)],
        Pos::Prep => &[(Pos::Det, 1.0)],
        Pos::End => &[(Pos::Det, 1.0)],
    }
}

/// SplitMix64: a tiny deterministic generator (no dependency, same stream on every platform).
#[derive(Clone, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seeded Markov-chain corpus with an exactly known entropy rate (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct MarkovCorpus {
    words: Vec<&'static str>,
    /// `next[u]`: (word, probability) pairs, probabilities summing to 1.
    next: Vec<Vec<(usize, f64)>>,
    stationary: Vec<f64>,
}

impl MarkovCorpus {
    /// The built-in English-like grammar; `seed` fixes the word preferences.
    pub fn english_like(seed: u64) -> Self {
        let mut words = Vec::new();
        let mut pos_of = Vec::new();
        for (p, ws) in WORDS {
            for w in *ws {
                words.push(*w);
                pos_of.push(*p);
            }
        }
        let mut rng = SplitMix(seed ^ 0x5eed_c0de);
        let n = words.len();
        let mut next = Vec::with_capacity(n);
        for u in 0..n {
            let mut row = Vec::new();
            for &(p, pp) in pos_transitions(pos_of[u]) {
                let members: Vec<usize> = (0..n).filter(|&w| pos_of[w] == p).collect();
                // Skewed preferences per (previous word, next part of speech): weights u^3
                // give a few likely continuations and a long tail.
                let weights: Vec<f64> = members.iter().map(|_| 0.05 + rng.unit().powi(3)).collect();
                let total: f64 = weights.iter().sum();
                for (&w, wt) in members.iter().zip(&weights) {
                    row.push((w, pp * wt / total));
                }
            }
            next.push(row);
        }
        // Stationary distribution by power iteration (the chain is irreducible and aperiodic:
        // Adj → Adj is a self-loop).
        let mut pi = vec![1.0 / n as f64; n];
        for _ in 0..10_000 {
            let mut nxt = vec![0.0; n];
            for (u, row) in next.iter().enumerate() {
                for &(w, p) in row {
                    nxt[w] += pi[u] * p;
                }
            }
            let diff: f64 = nxt.iter().zip(&pi).map(|(a, b)| (a - b).abs()).sum();
            pi = nxt;
            if diff < 1e-15 {
                break;
            }
        }
        MarkovCorpus { words, next, stationary: pi }
    }

    /// The bytes a transition `u → w` adds to the text.
    fn emit(&self, w: usize) -> &'static str {
        self.words[w]
    }

    /// Bytes the transition `u → w` adds: a period is written as ".\n" right after the noun, a
    /// sentence's first word as "word", any other word as " word".
    fn emitted_len(&self, u: usize, w: usize) -> usize {
        if self.words[w] == "." {
            2
        } else if self.words[u] == "." {
            self.words[w].len()
        } else {
            1 + self.words[w].len()
        }
    }

    /// Entropy rate of the word chain, nats per word.
    pub fn nats_per_word(&self) -> f64 {
        self.next
            .iter()
            .zip(&self.stationary)
            .map(|(row, pi)| pi * row.iter().map(|(_, p)| if *p > 0.0 { -p * p.ln() } else { 0.0 }).sum::<f64>())
            .sum()
    }

    /// Mean bytes a word adds to the text (stationary).
    pub fn bytes_per_word(&self) -> f64 {
        self.next
            .iter()
            .zip(&self.stationary)
            .enumerate()
            .map(|(u, (row, pi))| pi * row.iter().map(|(w, p)| p * self.emitted_len(u, *w) as f64).sum::<f64>())
            .sum()
    }

    /// Entropy rate of the text, nats per byte.
    pub fn nats_per_byte(&self) -> f64 {
        self.nats_per_word() / self.bytes_per_word()
    }

    /// Entropy rate of the text, bits per byte.
    pub fn bits_per_byte(&self) -> f64 {
        self.nats_per_byte() / std::f64::consts::LN_2
    }

    /// The per-byte perplexity of the true model, `exp(nats_per_byte)`: no model's expected
    /// per-byte perplexity on long text is lower.
    pub fn perplexity_floor(&self) -> f64 {
        self.nats_per_byte().exp()
    }

    /// At least `min_bytes` of text from the chain, starting after a sentence end, ending with a
    /// complete sentence. The same `seed` gives the same text.
    pub fn generate(&self, min_bytes: usize, seed: u64) -> String {
        let mut rng = SplitMix(seed);
        let end = self.words.iter().position(|w| *w == ".").unwrap_or(0);
        let mut out = String::with_capacity(min_bytes + 64);
        let mut u = end;
        loop {
            let r = rng.unit();
            let row = &self.next[u];
            let mut acc = 0.0;
            let mut w = row.last().map_or(end, |x| x.0);
            for &(cand, p) in row {
                acc += p;
                if r < acc {
                    w = cand;
                    break;
                }
            }
            if w == end {
                out.push_str(".\n");
                if out.len() >= min_bytes {
                    return out;
                }
            } else {
                if u != end {
                    out.push(' ');
                }
                out.push_str(self.emit(w));
            }
            u = w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_and_stationary_distribution_are_proper() {
        let c = MarkovCorpus::english_like(3);
        for row in &c.next {
            let s: f64 = row.iter().map(|x| x.1).sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
        assert!((c.stationary.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Stationarity: π P = π.
        let mut pp = vec![0.0; c.words.len()];
        for (u, row) in c.next.iter().enumerate() {
            for &(w, p) in row {
                pp[w] += c.stationary[u] * p;
            }
        }
        assert!(pp.iter().zip(&c.stationary).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn empirical_rates_match_the_exact_ones() {
        let c = MarkovCorpus::english_like(11);
        let text = c.generate(400_000, 5);
        // Words per text: space-separated pieces (the period is glued to its noun) plus one
        // period per sentence.
        let sentences = text.matches(".\n").count();
        let tokens = text.split([' ', '\n']).filter(|w| !w.is_empty()).count() + sentences;
        let empirical = text.len() as f64 / tokens as f64;
        assert!(
            (empirical - c.bytes_per_word()).abs() < 0.02 * c.bytes_per_word(),
            "{empirical} vs {}",
            c.bytes_per_word()
        );
        // Plug-in estimate of the word-chain entropy rate from transition counts.
        let idx = |w: &str| c.words.iter().position(|x| *x == w).unwrap();
        let mut seq = vec![idx(".")];
        for line in text.lines() {
            for w in line.trim_end_matches('.').split(' ').filter(|w| !w.is_empty()) {
                seq.push(idx(w));
            }
            seq.push(idx("."));
        }
        let n = c.words.len();
        let mut counts = vec![0f64; n * n];
        for p in seq.windows(2) {
            counts[p[0] * n + p[1]] += 1.0;
        }
        let total: f64 = counts.iter().sum();
        let mut h = 0.0;
        for u in 0..n {
            let row: f64 = counts[u * n..(u + 1) * n].iter().sum();
            for w in 0..n {
                let k = counts[u * n + w];
                if k > 0.0 {
                    h -= k / total * (k / row).ln();
                }
            }
        }
        assert!((h - c.nats_per_word()).abs() < 0.02 * c.nats_per_word(), "{h} vs {}", c.nats_per_word());
    }

    #[test]
    fn generation_is_deterministic_and_complete() {
        let c = MarkovCorpus::english_like(2);
        assert_eq!(c.generate(5_000, 9), c.generate(5_000, 9));
        assert_ne!(c.generate(5_000, 9), c.generate(5_000, 10));
        let t = c.generate(1, 1);
        assert!(t.ends_with(".\n") && !t.starts_with(' '));
        assert!(c.bits_per_byte() > 0.5 && c.bits_per_byte() < 3.0, "{}", c.bits_per_byte());
    }
}
