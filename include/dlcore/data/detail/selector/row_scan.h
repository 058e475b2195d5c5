#pragma once

// Internals of dlcore::TopKTopPSelector: the hot loop that finds each row's
// top-P classes and offers them to the per-class buffers. Plain C++ over a
// contiguous pointer; no tensor operation per row.

#include <dlcore/data/detail/selector/class_buffers.h>
#include <dlcore/data/detail/selector/isa.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// Columns per block: a row is first summarised by the maximum of each block
/// of this many classes.
constexpr int64_t kTopKBlock = 16;

/// Rows ahead of the current one whose scores are prefetched (one 64-byte
/// line per block of the current row; docs/selector_isa.md).
constexpr int64_t kTopKPrefetchRows = 2;

/// Rows per block of the guess window (`TopKGuessWindow`).
constexpr int64_t kTopKGuessRows = 16;

/// The p-th best scores of recent rows, from which the next row's
/// threshold is guessed: their minimum and maximum over the last complete
/// block of kTopKGuessRows rows and the rows since (kTopKGuessRows to
/// 2 * kTopKGuessRows - 1 rows). Four scalars, no array, so that no vector
/// load reads a float just stored (why: docs/performance/pseudo_label.md).
struct TopKGuessWindow {
  float block_lo = 0;
  float block_hi = 0;
  float cur_lo = std::numeric_limits<float>::infinity();
  float cur_hi = -std::numeric_limits<float>::infinity();
  int64_t in_block = 0;
  bool have_block = false;

  /// Adds the p-th best score of the row just ranked.
  void record(float x) {
    cur_lo = x < cur_lo ? x : cur_lo;
    cur_hi = x > cur_hi ? x : cur_hi;
    if (++in_block == kTopKGuessRows) {
      block_lo = cur_lo;
      block_hi = cur_hi;
      cur_lo = std::numeric_limits<float>::infinity();
      cur_hi = -std::numeric_limits<float>::infinity();
      in_block = 0;
      have_block = true;
    }
  }
};

/// Writes the maximum of each block of `kTopKBlock` scores of the row `v`
/// (length `c`) into `bmax`; returns false when the row holds a non-finite
/// value (then `bmax` is meaningless).
inline bool topk_block_max(const float* v, int64_t c, float* bmax) {
  int64_t b = 0;
  int64_t j = 0;
#if DLCORE_TOPK_X86
  const __m128i exp_mask = _mm_set1_epi32(0x7f800000);
  __m128i bad = _mm_setzero_si128();
  for (; j + kTopKBlock <= c; j += kTopKBlock, ++b) {
    const __m128 a0 = _mm_loadu_ps(v + j);
    const __m128 a1 = _mm_loadu_ps(v + j + 4);
    const __m128 a2 = _mm_loadu_ps(v + j + 8);
    const __m128 a3 = _mm_loadu_ps(v + j + 12);
    bad = _mm_or_si128(
        bad,
        _mm_cmpeq_epi32(
            _mm_and_si128(_mm_castps_si128(a0), exp_mask), exp_mask));
    bad = _mm_or_si128(
        bad,
        _mm_cmpeq_epi32(
            _mm_and_si128(_mm_castps_si128(a1), exp_mask), exp_mask));
    bad = _mm_or_si128(
        bad,
        _mm_cmpeq_epi32(
            _mm_and_si128(_mm_castps_si128(a2), exp_mask), exp_mask));
    bad = _mm_or_si128(
        bad,
        _mm_cmpeq_epi32(
            _mm_and_si128(_mm_castps_si128(a3), exp_mask), exp_mask));
    __m128 m = _mm_max_ps(_mm_max_ps(a0, a1), _mm_max_ps(a2, a3));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    bmax[b] = _mm_cvtss_f32(m);
  }
  if (_mm_movemask_epi8(bad) != 0) {
    return false;
  }
#endif
  for (; j < c; j += kTopKBlock, ++b) {
    const int64_t end = j + kTopKBlock < c ? j + kTopKBlock : c;
    float m = v[j];
    for (int64_t i = j; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, v + i, sizeof(bits));
      if ((bits & 0x7f800000u) == 0x7f800000u) {
        return false;
      }
      m = v[i] > m ? v[i] : m;
    }
    bmax[b] = m;
  }
  return true;
}

inline bool topk_block_max(const double* v, int64_t c, double* bmax) {
  int64_t b = 0;
  for (int64_t j = 0; j < c; j += kTopKBlock, ++b) {
    const int64_t end = j + kTopKBlock < c ? j + kTopKBlock : c;
    double m = v[j];
    bool finite = true;
    for (int64_t i = j; i < end; ++i) {
      finite &= std::isfinite(v[i]);
      m = v[i] > m ? v[i] : m;
    }
    if (!finite) {
      return false;
    }
    bmax[b] = m;
  }
  return true;
}

/// Per-thread scratch space of the row scan.
template <typename scalar_t>
struct TopKRowScratch {
  std::vector<scalar_t> bmax;
  /// The row's best `p` scores and classes, best first (one spare slot).
  std::vector<scalar_t> top_val;
  std::vector<int64_t> top_cls;
  /// Classes whose score reached the guessed threshold (float fast paths;
  /// 32 spare slots for whole-vector stores).
  std::vector<int32_t> cand;
  /// The rows ranked so far, for the next guess (float fast paths).
  TopKGuessWindow window;

  TopKRowScratch(int64_t c, int64_t p)
      : bmax(static_cast<size_t>((c + kTopKBlock - 1) / kTopKBlock)),
        top_val(static_cast<size_t>(p + 1)),
        top_cls(static_cast<size_t>(p + 1)),
        cand(static_cast<size_t>(c + 32)) {}
};
/// Finds the top-`p` classes of the row `v` (length `c`) under the order
/// (score descending, class ascending) and writes them to `top_val` /
/// `top_cls`, best first; returns how many (min(p, c)). Returns -1 when the
/// row holds a non-finite value.
///
/// First the maximum of every block of `kTopKBlock` classes; the p-th largest
/// block maximum m is a lower bound of the row's p-th largest score (the p
/// best blocks hold p distinct scores >= m), so only blocks whose maximum is
/// >= m, and in them only scores >= m, can hold a top-p class. Those are
/// scanned in ascending class order with a strict comparison, which keeps
/// the lower class first on ties.
template <typename scalar_t>
int64_t topk_row_top_p(
    const scalar_t* v, int64_t c, int64_t p, TopKRowScratch<scalar_t>& s) {
  const int64_t nb = (c + kTopKBlock - 1) / kTopKBlock;
  scalar_t* bmax = s.bmax.data();
  if (!topk_block_max(v, c, bmax)) {
    return -1;
  }
  scalar_t* tv = s.top_val.data();
  int64_t* tc = s.top_cls.data();
  // The p-th largest block maximum (all blocks when there are at most p).
  // With at most p blocks every score may be in the top p.
  scalar_t lower = std::numeric_limits<scalar_t>::lowest();
  if (nb > p) {
    int64_t n = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const scalar_t x = bmax[b];
      if (n == p && !(x > tv[p - 1])) {
        continue;
      }
      int64_t pos = n < p ? n++ : p - 1;
      while (pos > 0 && x > tv[pos - 1]) {
        tv[pos] = tv[pos - 1];
        --pos;
      }
      tv[pos] = x;
    }
    lower = tv[p - 1];
  }
  int64_t n = 0;
  for (int64_t b = 0; b < nb; ++b) {
    if (bmax[b] < lower) {
      continue;
    }
    const int64_t j0 = b * kTopKBlock;
    const int64_t j1 = j0 + kTopKBlock < c ? j0 + kTopKBlock : c;
    for (int64_t j = j0; j < j1; ++j) {
      const scalar_t x = v[j];
      if (x < lower) {
        continue;
      }
      if (n == p && !(x > tv[p - 1])) {
        continue;
      }
      int64_t pos = n < p ? n++ : p - 1;
      while (pos > 0 && x > tv[pos - 1]) {
        tv[pos] = tv[pos - 1];
        tc[pos] = tc[pos - 1];
        --pos;
      }
      tv[pos] = x;
      tc[pos] = j;
    }
  }
  return n;
}

/// Keeps, among the `nc` candidates (`cand`: classes of the row `v` in
/// ascending order), the best `p` under (score descending, class ascending),
/// best first, in `tv` / `tc`. Needs nc >= p.
inline void topk_select_insert(
    const float* v,
    const int32_t* cand,
    int64_t nc,
    int64_t p,
    float* tv,
    int64_t* tc) {
  int64_t n = 0;
  for (int64_t i = 0; i < nc; ++i) {
    const float x = v[cand[i]];
    if (n == p && !(x > tv[p - 1])) {
      continue;
    }
    int64_t pos = n < p ? n++ : p - 1;
    while (pos > 0 && x > tv[pos - 1]) {
      tv[pos] = tv[pos - 1];
      tc[pos] = tc[pos - 1];
      --pos;
    }
    tv[pos] = x;
    tc[pos] = cand[i];
  }
}

#if DLCORE_TOPK_X86

/// The scalar end of a candidate scan: classes [j, c) whose score is >= g
/// are appended to `cand`; returns whether those scores are all finite.
inline bool topk_scan_tail(
    const float* v, int64_t j, int64_t c, float g, int32_t* cand, int64_t& nc) {
  bool finite = true;
  for (; j < c; ++j) {
    finite &= std::isfinite(v[j]);
    if (v[j] >= g) {
      cand[nc++] = static_cast<int32_t>(j);
    }
  }
  return finite;
}

/// SSE2 candidate scan: writes to `cand` the classes whose score is >= g,
/// in ascending order, and returns how many; -1 when the row holds a
/// non-finite value. Prefetches the row `ahead` (one line per 16 floats).
inline int64_t topk_scan_sse2(
    const float* v, int64_t c, float g, int32_t* cand, const float* ahead) {
  int64_t nc = 0;
  int64_t j = 0;
  const __m128 gv = _mm_set1_ps(g);
  // x - x is NaN exactly when x is NaN or infinite.
  __m128 acc0 = _mm_setzero_ps();
  __m128 acc1 = _mm_setzero_ps();
  for (; j + kTopKBlock <= c; j += kTopKBlock) {
    if (ahead != nullptr) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + j), _MM_HINT_T0);
    }
    const __m128 a0 = _mm_loadu_ps(v + j);
    const __m128 a1 = _mm_loadu_ps(v + j + 4);
    const __m128 a2 = _mm_loadu_ps(v + j + 8);
    const __m128 a3 = _mm_loadu_ps(v + j + 12);
    acc0 = _mm_add_ps(acc0, _mm_sub_ps(a0, a0));
    acc1 = _mm_add_ps(acc1, _mm_sub_ps(a1, a1));
    acc0 = _mm_add_ps(acc0, _mm_sub_ps(a2, a2));
    acc1 = _mm_add_ps(acc1, _mm_sub_ps(a3, a3));
    const int mask = _mm_movemask_ps(_mm_cmpge_ps(a0, gv)) |
                     (_mm_movemask_ps(_mm_cmpge_ps(a1, gv)) << 4) |
                     (_mm_movemask_ps(_mm_cmpge_ps(a2, gv)) << 8) |
                     (_mm_movemask_ps(_mm_cmpge_ps(a3, gv)) << 12);
    for (unsigned m = static_cast<unsigned>(mask); m != 0; m &= m - 1) {
      cand[nc++] = static_cast<int32_t>(j + __builtin_ctz(m));
    }
  }
  bool finite =
      _mm_movemask_ps(_mm_cmpunord_ps(_mm_add_ps(acc0, acc1), acc0)) == 0;
  finite &= topk_scan_tail(v, j, c, g, cand, nc);
  return finite ? nc : -1;
}

/// For every 8-bit mask, the lanes whose bit is set, packed to the front:
/// the permutation of the AVX2 scan's branch-free left-pack.
struct TopKLeftPack {
  int32_t lane[256][8];
};

constexpr TopKLeftPack topk_make_left_pack() {
  TopKLeftPack t{};
  for (int m = 0; m < 256; ++m) {
    int n = 0;
    for (int b = 0; b < 8; ++b) {
      if ((m >> b) & 1) {
        t.lane[m][n++] = b;
      }
    }
    for (; n < 8; ++n) {
      t.lane[m][n] = 0;
    }
  }
  return t;
}

inline constexpr TopKLeftPack kTopKLeftPack = topk_make_left_pack();

#define DLCORE_TOPK_AVX2 __attribute__((target("avx2,popcnt")))
#define DLCORE_TOPK_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt")))

/// Appends the classes `at` + lane of the lanes of `a` that are >= `gv` to
/// `cand` with one permutation (8 spare slots).
DLCORE_TOPK_AVX2 __attribute__((always_inline)) inline void topk_pack_avx2(
    __m256 a, __m256 gv, int64_t at, int32_t* cand, int64_t& nc) {
  const int m = _mm256_movemask_ps(_mm256_cmp_ps(a, gv, _CMP_GE_OQ));
  const __m256i perm = _mm256_loadu_si256(
      reinterpret_cast<const __m256i*>(kTopKLeftPack.lane[m]));
  const __m256i idx = _mm256_add_epi32(
      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
      _mm256_set1_epi32(static_cast<int32_t>(at)));
  _mm256_storeu_si256(
      reinterpret_cast<__m256i*>(cand + nc),
      _mm256_permutevar8x32_epi32(idx, perm));
  nc += __builtin_popcount(static_cast<unsigned>(m));
}

/// AVX2 candidate scan, same contract as `topk_scan_sse2`, without a branch
/// per candidate: each 8-lane mask packs its lanes with one permutation
/// (`cand` needs 8 spare slots).
DLCORE_TOPK_AVX2 inline int64_t topk_scan_avx2(
    const float* v, int64_t c, float g, int32_t* cand, const float* ahead) {
  int64_t nc = 0;
  int64_t j = 0;
  const __m256 gv = _mm256_set1_ps(g);
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  for (; j + kTopKBlock <= c; j += kTopKBlock) {
    if (ahead != nullptr) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + j), _MM_HINT_T0);
    }
    const __m256 a0 = _mm256_loadu_ps(v + j);
    const __m256 a1 = _mm256_loadu_ps(v + j + 8);
    acc0 = _mm256_add_ps(acc0, _mm256_sub_ps(a0, a0));
    acc1 = _mm256_add_ps(acc1, _mm256_sub_ps(a1, a1));
    topk_pack_avx2(a0, gv, j, cand, nc);
    topk_pack_avx2(a1, gv, j + 8, cand, nc);
  }
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  bool finite = _mm256_movemask_ps(_mm256_cmp_ps(acc, acc, _CMP_UNORD_Q)) == 0;
  finite &= topk_scan_tail(v, j, c, g, cand, nc);
  return finite ? nc : -1;
}

/// AVX-512 candidate scan of one row, same contract as `topk_scan_sse2`,
/// branch-free: each 16-lane mask compresses its classes (`cand` needs 16
/// spare slots); finiteness by `fpclass` (NaN or infinity) into one mask.
/// It runs in pieces, `run(until)` then `finish()`, so that the row scan
/// can do other work (the previous row's offers) between them while this
/// row's loads are in flight.
class TopKScanAvx512 {
 public:
  DLCORE_TOPK_AVX512 TopKScanAvx512(
      const float* v, int64_t c, float g, int32_t* cand, const float* ahead)
      : v_(v), ahead_(ahead), c_(c), g_(g), cand_(cand) {}

  /// Scans the pairs of blocks that end at or before class `until`.
  DLCORE_TOPK_AVX512 __attribute__((always_inline)) void run(int64_t until) {
    const __m512 gv = _mm512_set1_ps(g_);
    const __m512i step = _mm512_set1_epi32(static_cast<int32_t>(kTopKBlock));
    __m512i idx = _mm512_add_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(static_cast<int32_t>(j_)));
    const int64_t end = until < c_ ? until : c_;
    for (; j_ + 2 * kTopKBlock <= end; j_ += 2 * kTopKBlock) {
      if (ahead_ != nullptr) {
        _mm_prefetch(reinterpret_cast<const char*>(ahead_ + j_), _MM_HINT_T0);
        _mm_prefetch(
            reinterpret_cast<const char*>(ahead_ + j_ + kTopKBlock),
            _MM_HINT_T0);
      }
      const __m512 a0 = _mm512_loadu_ps(v_ + j_);
      const __m512 a1 = _mm512_loadu_ps(v_ + j_ + kTopKBlock);
      bad_ |= _mm512_fpclass_ps_mask(a0, kNonFinite) |
              _mm512_fpclass_ps_mask(a1, kNonFinite);
      const __mmask16 m0 = _mm512_cmp_ps_mask(a0, gv, _CMP_GE_OQ);
      const __mmask16 m1 = _mm512_cmp_ps_mask(a1, gv, _CMP_GE_OQ);
      // Both counts first, so that the two stores do not wait on each other.
      const int64_t n0 = __builtin_popcount(static_cast<unsigned>(m0));
      const int64_t n1 = __builtin_popcount(static_cast<unsigned>(m1));
      _mm512_storeu_si512(cand_ + nc_, _mm512_maskz_compress_epi32(m0, idx));
      idx = _mm512_add_epi32(idx, step);
      _mm512_storeu_si512(
          cand_ + nc_ + n0, _mm512_maskz_compress_epi32(m1, idx));
      idx = _mm512_add_epi32(idx, step);
      nc_ += n0 + n1;
    }
  }

  /// Scans the rest of the row; returns the number of candidates, or -1
  /// when the row holds a non-finite value.
  DLCORE_TOPK_AVX512 __attribute__((always_inline)) int64_t finish() {
    run(c_);
    const __m512 gv = _mm512_set1_ps(g_);
    for (; j_ < c_; j_ += kTopKBlock) {
      const __mmask16 in = c_ - j_ >= kTopKBlock
                               ? static_cast<__mmask16>(0xffff)
                               : static_cast<__mmask16>((1u << (c_ - j_)) - 1u);
      const __m512 a = _mm512_maskz_loadu_ps(in, v_ + j_);
      bad_ |= _mm512_fpclass_ps_mask(a, kNonFinite);
      const __mmask16 m = _mm512_mask_cmp_ps_mask(in, a, gv, _CMP_GE_OQ);
      const __m512i idx = _mm512_add_epi32(
          _mm512_setr_epi32(
              0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
          _mm512_set1_epi32(static_cast<int32_t>(j_)));
      _mm512_storeu_si512(cand_ + nc_, _mm512_maskz_compress_epi32(m, idx));
      nc_ += __builtin_popcount(static_cast<unsigned>(m));
    }
    return bad_ == 0 ? nc_ : -1;
  }

 private:
  // fpclass categories: quiet NaN, +infinity, -infinity, signalling NaN.
  static constexpr int kNonFinite = 0x01 | 0x08 | 0x10 | 0x80;
  const float* v_;
  const float* ahead_;
  int64_t c_;
  float g_;
  int32_t* cand_;
  int64_t j_ = 0;
  int64_t nc_ = 0;
  __mmask16 bad_ = 0;
};

/// The whole AVX-512 candidate scan of one row (`TopKScanAvx512`).
DLCORE_TOPK_AVX512 inline int64_t topk_scan_avx512(
    const float* v, int64_t c, float g, int32_t* cand, const float* ahead) {
  TopKScanAvx512 scan(v, c, g, cand, ahead);
  return scan.finish();
}

/// `topk_select_insert` for at most 32 candidates without a data-dependent
/// branch: each candidate's rank is the number of candidates better than it
/// (higher score, or equal score and lower class, i.e. earlier), counted
/// with two vector comparisons; ranks below `p` are written, the others go
/// to the spare slot `p` of `tv` / `tc`.
DLCORE_TOPK_AVX512 inline void topk_select_rank_avx512(
    const float* v,
    const int32_t* cand,
    int64_t nc,
    int64_t p,
    float* tv,
    int64_t* tc) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const uint32_t live = nc >= 32 ? 0xffffffffu : (1u << nc) - 1u;
  const __mmask16 live_lo = static_cast<__mmask16>(live & 0xffffu);
  const __mmask16 live_hi = static_cast<__mmask16>(live >> 16);
  const __m512 lo = _mm512_mask_i32gather_ps(
      ninf, live_lo, _mm512_maskz_loadu_epi32(live_lo, cand), v, 4);
  const __m512 hi = _mm512_mask_i32gather_ps(
      ninf,
      live_hi,
      _mm512_maskz_loadu_epi32(live_hi, cand + kTopKBlock),
      v,
      4);
  for (int64_t i = 0; i < nc; ++i) {
    const float x = v[cand[i]];
    const __m512 xv = _mm512_set1_ps(x);
    const uint32_t gt =
        static_cast<uint32_t>(_mm512_cmp_ps_mask(lo, xv, _CMP_GT_OQ)) |
        (static_cast<uint32_t>(_mm512_cmp_ps_mask(hi, xv, _CMP_GT_OQ)) << 16);
    const uint32_t eq =
        static_cast<uint32_t>(_mm512_cmp_ps_mask(lo, xv, _CMP_EQ_OQ)) |
        (static_cast<uint32_t>(_mm512_cmp_ps_mask(hi, xv, _CMP_EQ_OQ)) << 16);
    const int64_t rank =
        __builtin_popcount(gt) + __builtin_popcount(eq & ((1u << i) - 1u));
    const int64_t slot = rank < p ? rank : p;
    tv[slot] = x;
    tc[slot] = cand[i];
  }
}

#endif // DLCORE_TOPK_X86

/// The guessed threshold of the next row's candidate scan, and how far
/// apart the recent rows' p-th best scores are.
struct TopKGuess {
  /// The smallest p-th best score in the guess window (`lowest` before
  /// kTopKGuessRows rows).
  float threshold;
  /// max - min of those scores (0 before).
  float spread;
};

/// `TopKGuess` of the rows ranked so far.
inline TopKGuess topk_guess(const TopKRowScratch<float>& s) {
  const TopKGuessWindow& w = s.window;
  if (!w.have_block) {
    return {std::numeric_limits<float>::lowest(), 0.0f};
  }
  const float lo = w.cur_lo < w.block_lo ? w.cur_lo : w.block_lo;
  const float hi = w.cur_hi > w.block_hi ? w.cur_hi : w.block_hi;
  return {lo, hi - lo};
}

#if DLCORE_TOPK_X86
/// The candidate scan of `isa` (not kScalar).
inline int64_t topk_scan(
    TopKIsa isa,
    const float* v,
    int64_t c,
    float g,
    int32_t* cand,
    const float* ahead) {
  if (isa == TopKIsa::kAvx512) {
    return topk_scan_avx512(v, c, g, cand, ahead);
  }
  if (isa == TopKIsa::kAvx2) {
    return topk_scan_avx2(v, c, g, cand, ahead);
  }
  return topk_scan_sse2(v, c, g, cand, ahead);
}
#endif

/// The row scan's writer into one `TopKState`: per class, everything an
/// offer reads or writes except the entry itself, packed in one dense array
/// (24 bytes per class, 24 KB at C = 1000): the buffer's reject floor
/// (`reject_below`, `reject_index`) and its entry count. An offer decides
/// without a branch whether the class keeps the entry and writes it to the
/// class's next slot
/// (`TopKState` lays the slots out at a fixed stride) or to a sink slot hot
/// in L1. The buffers' counts are written back when the writer is
/// destroyed; the floors change only when a buffer compacts. `E` is the
/// state's entry type (`TopKEntry32` only for float rows).
template <typename scalar_t, typename E>
class TopKOffers {
 public:
  explicit TopKOffers(TopKState<E>& state)
      : state_(state),
        slots_(state.slots()),
        stride_(state.stride()),
        hot_(static_cast<size_t>(state.size())) {
    for (int64_t c = 0; c < state.size(); ++c) {
      if (state[c].held() >= stride_) {
        state[c].compact(); // full only after a compaction that threw
      }
      hot_[static_cast<size_t>(c)].held = state[c].held();
      refresh(c);
    }
  }
  TopKOffers(const TopKOffers&) = delete;
  TopKOffers& operator=(const TopKOffers&) = delete;
  ~TopKOffers() {
    for (int64_t c = 0; c < state_.size(); ++c) {
      state_[c].set_held(hot_[static_cast<size_t>(c)].held);
    }
  }

  /// Offers `(x, index)` to class `c`.
  void offer(int64_t c, scalar_t x, int64_t index) {
    Hot& h = hot_[static_cast<size_t>(c)];
    const bool keep =
        (x > h.floor) | ((x == h.floor) & (index < h.floor_index));
    // The next slot when kept, else the sink: a select on the address.
    const auto m = std::uintptr_t{0} - static_cast<std::uintptr_t>(keep);
    auto* dst = reinterpret_cast<E*>(
        (reinterpret_cast<std::uintptr_t>(slots_ + c * stride_ + h.held) & m) |
        (reinterpret_cast<std::uintptr_t>(&sink_) & ~m));
    *dst =
        E{static_cast<TopKScore<E>>(x), static_cast<decltype(E::index)>(index)};
    h.held += static_cast<int64_t>(keep);
    if (h.held == stride_) {
      TopKBuffer<E>& b = state_[c];
      b.set_held(h.held);
      b.compact();
      h.held = b.held();
      refresh(c);
    }
  }

  /// Offers the row's top `n` (in `s`) with the row's global index.
  void offer_row(const TopKRowScratch<scalar_t>& s, int64_t n, int64_t index) {
    for (int64_t i = 0; i < n; ++i) {
      offer(s.top_cls[i], s.top_val[i], index);
    }
  }

 private:
  // Rejected: a score below `floor`, or equal to it with an index
  // >= `floor_index`.
  struct Hot {
    int64_t floor_index;
    int64_t held;
    scalar_t floor;
  };

  void refresh(int64_t c) {
    Hot& h = hot_[static_cast<size_t>(c)];
    h.floor = state_[c].template reject_below<scalar_t>();
    h.floor_index = state_[c].reject_index();
  }

  TopKState<E>& state_;
  E* slots_;
  int64_t stride_;
  std::vector<Hot> hot_;
  E sink_{};
};

#if DLCORE_TOPK_X86
/// What the pipelined row loops keep between rows: the scratch, the
/// candidate lists of the row being finished (`cur`) and of the row being
/// scanned (`next`), which swap after each row, and where the prefetches
/// go. Not copyable: `cur` and `next` point into it.
struct TopKPipeline {
  TopKPipeline(const float* data, int64_t r1, int64_t c, int64_t p)
      : s(c, p),
        spare(s.cand.size()),
        cur(s.cand.data()),
        next(spare.data()),
        data_(data),
        r1_(r1),
        c_(c) {}
  TopKPipeline(const TopKPipeline&) = delete;
  TopKPipeline& operator=(const TopKPipeline&) = delete;

  /// After a row: the scanned row's candidates become the ones to finish.
  void swap() {
    std::swap(cur, next);
  }

  /// The row kTopKPrefetchRows after row r, or nullptr past the range.
  const float* ahead_of(int64_t r) const {
    return r + kTopKPrefetchRows < r1_ ? data_ + (r + kTopKPrefetchRows) * c_
                                       : nullptr;
  }

  TopKRowScratch<float> s;
  std::vector<int32_t> spare;
  int32_t* cur;
  int32_t* next;

 private:
  const float* data_;
  int64_t r1_;
  int64_t c_;
};
#endif

#if DLCORE_TOPK_X86
/// The row `v`'s top p into `s.top_val` / `s.top_cls`, best first, from the
/// `nc` candidates (>= 0) that the scan with guess `g` collected in `cand`:
/// when fewer than p, a second scan from L1 with the guess lowered by twice
/// the recent spread, then the exact block method. Records the row's p-th
/// best score for the next guesses.
inline void topk_finish_row(
    TopKIsa isa,
    const float* v,
    int64_t c,
    int64_t p,
    const TopKGuess& g,
    int32_t* cand,
    int64_t nc,
    TopKRowScratch<float>& s) {
  if (nc < p && g.spread > 0) {
    nc = topk_scan(isa, v, c, g.threshold - 2 * g.spread, cand, nullptr);
  }
  if (nc < p) {
    topk_row_top_p(v, c, p, s);
  } else if (isa == TopKIsa::kAvx512 && nc <= 2 * kTopKBlock) {
    topk_select_rank_avx512(v, cand, nc, p, s.top_val.data(), s.top_cls.data());
  } else {
    topk_select_insert(v, cand, nc, p, s.top_val.data(), s.top_cls.data());
  }
  s.window.record(s.top_val[p - 1]);
}
#endif

/// `topk_ingest_rows` for float rows with a SIMD `isa`, software-pipelined:
/// row r + 1 is scanned before row r's candidates are ranked and offered,
/// so the ranking and the buffer pushes overlap the next row's loads. Row
/// r + 1's guess therefore comes from the rows before r. Each row, in turn:
/// one SIMD pass collects the classes whose score is >= the guess g (and
/// checks finiteness); when at least p are collected, the row's p-th best
/// score is >= g, so the top p are among them (ties included). Otherwise (a
/// bad guess: with i.i.d. rows, about 1 row in n + 1 for a window of n
/// rows, n = 16 to 31) a second
/// pass from L1 with the guess lowered by twice the recent spread, then the
/// exact block method. Same result as `topk_row_top_p` on every row.
template <typename IndexOf, typename E>
int64_t topk_ingest_rows_pipelined(
    const float* data,
    int64_t r0,
    int64_t r1,
    int64_t c,
    int64_t p,
    const IndexOf& index_of,
    TopKOffers<float, E>& offers,
    TopKIsa isa) {
#if DLCORE_TOPK_X86
  TopKPipeline pipe(data, r1, c, p);
  TopKRowScratch<float>& s = pipe.s;
  TopKGuess g = topk_guess(s);
  int64_t nc =
      r0 < r1
          ? topk_scan(
                isa, data + r0 * c, c, g.threshold, pipe.cur, pipe.ahead_of(r0))
          : 0;
  for (int64_t r = r0; r < r1; ++r) {
    const float* v = data + r * c;
    TopKGuess g_next{0.0f, 0.0f};
    int64_t nc_next = 0;
    if (r + 1 < r1) {
      g_next = topk_guess(s);
      nc_next = topk_scan(
          isa, v + c, c, g_next.threshold, pipe.next, pipe.ahead_of(r + 1));
    }
    if (nc < 0) {
      return r;
    }
    topk_finish_row(isa, v, c, p, g, pipe.cur, nc, s);
    offers.offer_row(s, p, index_of(r));
    pipe.swap();
    nc = nc_next;
    g = g_next;
  }
  return -1;
#else
  (void)data;
  (void)r0;
  (void)r1;
  (void)c;
  (void)p;
  (void)index_of;
  (void)offers;
  (void)isa;
  // Unreachable: without x86 SIMD, topk_isa() is always kScalar.
  std::abort();
#endif
}

#if DLCORE_TOPK_X86
/// `topk_ingest_rows` for float rows with AVX-512: the order of
/// `topk_ingest_rows_pipelined`, with row r's ranking and offers placed in
/// the middle of row r + 1's scan (`TopKScanAvx512` in two pieces), so that
/// they run while that row's loads and the prefetches of the row after are
/// in flight (what it bought: docs/selector_isa.md). Same result as
/// `topk_row_top_p` on every row.
template <typename IndexOf, typename E>
DLCORE_TOPK_AVX512 int64_t topk_ingest_rows_avx512(
    const float* data,
    int64_t r0,
    int64_t r1,
    int64_t c,
    int64_t p,
    const IndexOf& index_of,
    TopKOffers<float, E>& offers) {
  TopKPipeline pipe(data, r1, c, p);
  TopKRowScratch<float>& s = pipe.s;
  TopKGuess g = topk_guess(s);
  int64_t nc =
      r0 < r1 ? topk_scan_avx512(
                    data + r0 * c, c, g.threshold, pipe.cur, pipe.ahead_of(r0))
              : 0;
  for (int64_t r = r0; r < r1; ++r) {
    const float* v = data + r * c;
    if (nc < 0) {
      return r;
    }
    const bool more = r + 1 < r1;
    // From the rows before r: row r is not ranked yet.
    const TopKGuess g_next = topk_guess(s);
    TopKScanAvx512 scan(
        v + c, c, g_next.threshold, pipe.next, pipe.ahead_of(r + 1));
    if (more) {
      scan.run(c / 2);
    }
    topk_finish_row(TopKIsa::kAvx512, v, c, p, g, pipe.cur, nc, s);
    offers.offer_row(s, p, index_of(r));
    if (more) {
      nc = scan.finish();
    }
    g = g_next;
    pipe.swap();
  }
  return -1;
}
#endif

/// The block method with the row `ahead` prefetched (float64 rows, and
/// float rows without SIMD).
template <typename scalar_t>
int64_t topk_row_top_p_fast(
    const scalar_t* v,
    int64_t c,
    int64_t p,
    TopKRowScratch<scalar_t>& s,
    const scalar_t* ahead) {
  if (ahead != nullptr) {
    const char* a = reinterpret_cast<const char*>(ahead);
    const int64_t bytes = c * static_cast<int64_t>(sizeof(scalar_t));
    for (int64_t off = 0; off < bytes; off += 64) {
      __builtin_prefetch(a + off);
    }
  }
  return topk_row_top_p(v, c, p, s);
}

/// Ingests rows [r0, r1) of the contiguous `[rows, c]` matrix `data`: each
/// row's top-`p` classes are offered to `state[class]` with the row's
/// global index `index_of(r)`. Returns the first row holding a non-finite
/// value (rows before it are ingested), or -1.
template <typename scalar_t, typename IndexOf, typename E>
int64_t topk_ingest_rows(
    const scalar_t* data,
    int64_t r0,
    int64_t r1,
    int64_t c,
    int64_t p,
    const IndexOf& index_of,
    TopKState<E>& state) {
  static_assert(
      std::is_same_v<E, TopKEntry> || std::is_same_v<scalar_t, float>,
      "TopKEntry32 holds float scores only");
  const TopKIsa isa = topk_isa();
  TopKOffers<scalar_t, E> offers(state);
  if constexpr (std::is_same_v<scalar_t, float>) {
#if DLCORE_TOPK_X86
    if (isa == TopKIsa::kAvx512) {
      return topk_ingest_rows_avx512(data, r0, r1, c, p, index_of, offers);
    }
#endif
    if (isa != TopKIsa::kScalar) {
      return topk_ingest_rows_pipelined(
          data, r0, r1, c, p, index_of, offers, isa);
    }
  }
  TopKRowScratch<scalar_t> s(c, p);
  for (int64_t r = r0; r < r1; ++r) {
    const scalar_t* v = data + r * c;
    // Prefetch a later row while this one is scanned.
    const scalar_t* ahead = r + kTopKPrefetchRows < r1
                                ? data + (r + kTopKPrefetchRows) * c
                                : nullptr;
    const int64_t n = topk_row_top_p_fast(v, c, p, s, ahead);
    if (n < 0) {
      return r;
    }
    offers.offer_row(s, n, index_of(r));
  }
  return -1;
}

} // namespace detail
} // namespace dlcore

#undef DLCORE_TOPK_AVX2
#undef DLCORE_TOPK_AVX512
