#pragma once

// Internals of dlcore::TopKTopPSelector: the hot loop that finds each row's
// top-P classes and offers them to the per-class buffers. Plain C++ over a
// contiguous pointer; no tensor operation per row.

#include <dlcore/detail/topk_buffer.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace dlcore {
namespace detail {

/// Columns per block: a row is first summarised by the maximum of each block
/// of this many classes.
constexpr int64_t kTopKBlock = 16;

/// Rows ahead of the current one whose scores are prefetched (one 64-byte
/// line per block of the current row; 1 to 2 measured best here).
constexpr int64_t kTopKPrefetchRows = 2;

/// Writes the maximum of each block of `kTopKBlock` scores of the row `v`
/// (length `c`) into `bmax`; returns false when the row holds a non-finite
/// value (then `bmax` is meaningless).
inline bool topk_block_max(const float* v, int64_t c, float* bmax) {
  int64_t b = 0;
  int64_t j = 0;
#if defined(__SSE2__)
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
  std::vector<scalar_t> top_val;
  std::vector<int64_t> top_cls;
  /// Classes whose score reached the guessed threshold (float fast path).
  std::vector<int32_t> cand;
  /// The p-th best score of the last kTopKGuessRows rows.
  std::vector<scalar_t> recent;
  int64_t rows_done = 0;
};

/// Rows whose p-th best score sets the guessed threshold of the next row.
constexpr int64_t kTopKGuessRows = 16;

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

/// The float fast path of `topk_row_top_p`: guesses a threshold g (the
/// smallest p-th best score of the last kTopKGuessRows rows), collects in one
/// vectorized pass the classes whose score is >= g (and checks finiteness),
/// and when at least p are collected, the row's p-th best score is >= g, so
/// the top p are among them (ties included). Otherwise (a bad guess) the
/// exact block method runs. Same result as `topk_row_top_p` in every case.
inline int64_t topk_row_top_p_guess(
    const float* v,
    int64_t c,
    int64_t p,
    TopKRowScratch<float>& s,
    const float* ahead) {
#if defined(__SSE2__)
  float g = std::numeric_limits<float>::lowest();
  if (s.rows_done >= kTopKGuessRows) {
    g = s.recent[0];
    for (int64_t i = 1; i < kTopKGuessRows; ++i) {
      g = s.recent[i] < g ? s.recent[i] : g;
    }
  }
  int32_t* cand = s.cand.data();
  int64_t nc = 0;
  int64_t j = 0;
  const __m128 gv = _mm_set1_ps(g);
  // x - x is NaN exactly when x is NaN or infinite.
  __m128 acc0 = _mm_setzero_ps();
  __m128 acc1 = _mm_setzero_ps();
  for (; j + kTopKBlock <= c; j += kTopKBlock) {
    // One 64-byte line of a later row per block of 16 floats: the loads
    // stream ahead without stalling on a burst of prefetches.
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
  for (; j < c; ++j) {
    finite &= std::isfinite(v[j]);
    if (v[j] >= g) {
      cand[nc++] = static_cast<int32_t>(j);
    }
  }
  if (!finite) {
    return -1;
  }
  int64_t n = 0;
  if (nc >= p) {
    float* tv = s.top_val.data();
    int64_t* tc = s.top_cls.data();
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
  } else {
    n = topk_row_top_p(v, c, p, s);
  }
  s.recent[s.rows_done % kTopKGuessRows] = s.top_val[p - 1];
  ++s.rows_done;
  return n;
#else
  return topk_row_top_p(v, c, p, s);
#endif
}

inline int64_t topk_row_top_p_fast(
    const float* v,
    int64_t c,
    int64_t p,
    TopKRowScratch<float>& s,
    const float* ahead) {
  return topk_row_top_p_guess(v, c, p, s, ahead);
}

inline int64_t topk_row_top_p_fast(
    const double* v,
    int64_t c,
    int64_t p,
    TopKRowScratch<double>& s,
    const double* ahead) {
  if (ahead != nullptr) {
    const char* a = reinterpret_cast<const char*>(ahead);
    const int64_t bytes = c * static_cast<int64_t>(sizeof(double));
    for (int64_t off = 0; off < bytes; off += 64) {
      __builtin_prefetch(a + off);
    }
  }
  return topk_row_top_p(v, c, p, s);
}

/// Ingests rows [r0, r1) of the contiguous `[rows, c]` matrix `data`: each
/// row's top-`p` classes are offered to `buffers[class]` with the row's
/// global index `index_of(r)`. Returns the first row holding a non-finite
/// value (rows before it are ingested), or -1.
template <typename scalar_t, typename IndexOf>
int64_t topk_ingest_rows(
    const scalar_t* data,
    int64_t r0,
    int64_t r1,
    int64_t c,
    int64_t p,
    const IndexOf& index_of,
    TopKBuffer* buffers) {
  TopKRowScratch<scalar_t> s;
  s.bmax.resize(static_cast<size_t>((c + kTopKBlock - 1) / kTopKBlock));
  s.top_val.resize(static_cast<size_t>(p));
  s.top_cls.resize(static_cast<size_t>(p));
  s.cand.resize(static_cast<size_t>(c));
  s.recent.resize(static_cast<size_t>(kTopKGuessRows));
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
    const int64_t index = index_of(r);
    for (int64_t i = 0; i < n; ++i) {
      buffers[s.top_cls[i]].push(
          TopKEntry{static_cast<double>(s.top_val[i]), index});
    }
  }
  return -1;
}

} // namespace detail
} // namespace dlcore
