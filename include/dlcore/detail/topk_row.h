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
  for (int64_t r = r0; r < r1; ++r) {
    const scalar_t* v = data + r * c;
    const int64_t n = topk_row_top_p(v, c, p, s);
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
