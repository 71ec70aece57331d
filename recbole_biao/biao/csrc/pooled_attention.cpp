// The perceptron's pooled self-attention without autograd (the lower-step pass), one fused loop per row and head.
//
// Compiled on first use by recbole_biao/model/native.py with the machine's C++ compiler (-O3 -march=native) and
// called through ctypes; the Python formulation in perceptron.py stays the reference and the path under autograd.
//
// For every row b and head: the valid positions P of the row (in order), keys k_j = K[index_j] for j in P,
// queries q_i = Q[index_i] + qrow_b for i in P, a_ij = softmax_j(q_i . k_j) and the pooled output
// sum_j abar_j V[index_j] with abar_j = mean_i a_ij. Everything of one row and head stays in L1: nothing of shape
// [rows, heads, N, N] is written to memory, and only the valid positions are computed (no padding).
// 16 (or 8) queries are processed at once, one per vector lane, so the softmax's max and sum are lane-wise (no
// horizontal reductions) and the column sums are reduced once per key at the end.

#include <cstdint>
#include <cstring>

namespace {

template <int W> struct Vec {  // W floats (and int32s) in one vector: AVX-512 for 16, AVX for 8
    typedef float f __attribute__((vector_size(W * sizeof(float))));
    typedef int32_t i __attribute__((vector_size(W * sizeof(int32_t))));
};

constexpr int64_t kMaxPositions = 256;  // must match native.py: longer histories take the Python path
constexpr int64_t kMaxHeadSize = 64;
constexpr int64_t kRowsPerTask = 8;

// exp(x) for x <= 0: Cephes' single-precision polynomial (about 1 ulp); below -87 it returns exp(-87).
template <int W> inline typename Vec<W>::f exp_nonpositive(typename Vec<W>::f x) {
    typedef typename Vec<W>::f vf;
    typedef typename Vec<W>::i vi;
    const vf lowest = vf{} - 87.0f;
    x = x < lowest ? lowest : x;
    const vi n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, vi);  // round(x / ln 2), x <= 0
    const vf fn = __builtin_convertvector(n, vf);
    x = x - fn * 0.693359375f;
    x = x - fn * -2.12194440e-4f;
    vf p = x * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * x + 8.3334519073e-3f;
    p = p * x + 4.1665795894e-2f;
    p = p * x + 1.6666665459e-1f;
    p = p * x + 5.0000001201e-1f;
    p = p * (x * x) + x + 1.0f;
    const vi bits = (n + 127) << 23;
    vf scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

struct Inputs {
    const float *q_item, *k_item, *v_item;  // [items * heads, head size], head-major
    const int64_t *index;                   // [rows, n]
    const uint8_t *mask;                    // [rows, n]
    const float *q_row;                     // [rows, heads, head size]
    float *out;                             // [rows, heads * head size]
    int64_t n, heads;
};

// The queries i0 .. i0 + W - 1 (those < m) of one row and head, one per lane: adds their attention rows,
// divided by their sums, to column[j]. `keys` holds the row's keys, [m, d_head].
template <int W, int64_t kFixed>
inline void query_block(const Inputs &in, const int64_t *pos, int64_t m, int64_t i0, int64_t head, const float *q_row,
                        const float *keys, typename Vec<W>::f *column, typename Vec<W>::f *scores, int64_t dynamic) {
    typedef typename Vec<W>::f vf;
    const int64_t d_head = kFixed ? kFixed : dynamic;
    alignas(64) float rows_of_q[W][kMaxHeadSize];
    alignas(64) float lane[W];
    for (int l = 0; l < W; ++l) {
        if (i0 + l < m) {
            const float *q = in.q_item + (pos[i0 + l] * in.heads + head) * d_head;
            for (int64_t d = 0; d < d_head; ++d) rows_of_q[l][d] = q[d] + q_row[d];
        } else {
            for (int64_t d = 0; d < d_head; ++d) rows_of_q[l][d] = 0.0f;
        }
        lane[l] = i0 + l < m ? 1.0f : 0.0f;  // padding lanes count for nothing
    }
    alignas(64) float transposed[kMaxHeadSize][W];
    for (int64_t d = 0; d < d_head; ++d)
        for (int l = 0; l < W; ++l) transposed[d][l] = rows_of_q[l][d];
    vf qt[kMaxHeadSize];  // qt[d][lane]: dimension d of query i0 + lane
    for (int64_t d = 0; d < d_head; ++d) std::memcpy(&qt[d], transposed[d], sizeof(vf));
    vf top = vf{} - 3.0e38f;
    for (int64_t j = 0; j < m; ++j) {
        const float *k = keys + j * d_head;
        vf s = qt[0] * k[0];
        for (int64_t d = 1; d < d_head; ++d) s += qt[d] * k[d];
        scores[j] = s;
        top = s > top ? s : top;
    }
    vf total = vf{};
    for (int64_t j = 0; j < m; ++j) {
        scores[j] = exp_nonpositive<W>(scores[j] - top);
        total += scores[j];
    }
    vf real;
    std::memcpy(&real, lane, sizeof real);
    const vf share = real / total;
    for (int64_t j = 0; j < m; ++j) column[j] += scores[j] * share;
}

// One head of one row: blocks of 16 queries, the last 8 or fewer in a block of 8 (less padding); head_size is
// a compile-time constant in the common cases, so the queries stay in registers.
template <int64_t kFixed>
inline void one_head(const Inputs &in, const int64_t *pos, int64_t m, int64_t b, int64_t head, int64_t dynamic) {
    const int64_t d_head = kFixed ? kFixed : dynamic;
    alignas(64) float keys[kMaxPositions * kMaxHeadSize];
    typename Vec<16>::f wide[kMaxPositions], wide_scores[kMaxPositions];
    typename Vec<8>::f narrow[kMaxPositions], narrow_scores[kMaxPositions];
    const float *q_row = in.q_row + (b * in.heads + head) * d_head;
    for (int64_t j = 0; j < m; ++j) {
        std::memcpy(keys + j * d_head, in.k_item + (pos[j] * in.heads + head) * d_head, sizeof(float) * d_head);
        wide[j] = typename Vec<16>::f{};
        narrow[j] = typename Vec<8>::f{};
    }
    int64_t i0 = 0;
    for (; m - i0 > 8; i0 += 16)
        query_block<16, kFixed>(in, pos, m, i0, head, q_row, keys, wide, wide_scores, dynamic);
    if (i0 < m) query_block<8, kFixed>(in, pos, m, i0, head, q_row, keys, narrow, narrow_scores, dynamic);
    const float mean = 1.0f / static_cast<float>(m);
    float *out = in.out + b * in.heads * d_head + head * d_head;
    for (int64_t j = 0; j < m; ++j) {
        float c = 0.0f;
        for (int l = 0; l < 16; ++l) c += wide[j][l];
        for (int l = 0; l < 8; ++l) c += narrow[j][l];
        c *= mean;
        const float *v = in.v_item + (pos[j] * in.heads + head) * d_head;
        for (int64_t d = 0; d < d_head; ++d) out[d] += c * v[d];
    }
}

void rows(const Inputs &in, int64_t d_head, int64_t begin, int64_t end) {
    int64_t pos[kMaxPositions];
    for (int64_t b = begin; b < end; ++b) {
        int64_t m = 0;
        for (int64_t j = 0; j < in.n; ++j)
            if (in.mask[b * in.n + j]) pos[m++] = in.index[b * in.n + j];
        std::memset(in.out + b * in.heads * d_head, 0, sizeof(float) * in.heads * d_head);
        for (int64_t head = 0; m && head < in.heads; ++head) {
            switch (d_head) {
                case 8: one_head<8>(in, pos, m, b, head, 8); break;
                case 16: one_head<16>(in, pos, m, b, head, 16); break;
                case 32: one_head<32>(in, pos, m, b, head, 32); break;
                default: one_head<0>(in, pos, m, b, head, d_head);
            }
        }
    }
}

}  // namespace

extern "C" {

int64_t pooled_attention_limits(int64_t which) { return which == 0 ? kMaxPositions : kMaxHeadSize; }

// Tasks of kRowsPerTask rows are handed out dynamically (rows differ in their number of valid positions) to
// `threads` OpenMP threads: the library links the libgomp that torch has already loaded, so these are torch's own
// threads, not a second pool competing with them for the cores. Every row is computed by one thread alone, so the
// result does not depend on the thread count.
void pooled_attention(const float *q_item, const float *k_item, const float *v_item, const int64_t *index,
                      const uint8_t *mask, const float *q_row, float *out, int64_t rows_total, int64_t n,
                      int64_t heads, int64_t d_head, int64_t threads) {
    const Inputs in{q_item, k_item, v_item, index, mask, q_row, out, n, heads};
    const int64_t tasks = (rows_total + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t task = 0; task < tasks; ++task) {
        const int64_t begin = task * kRowsPerTask;
        rows(in, d_head, begin, begin + kRowsPerTask < rows_total ? begin + kRowsPerTask : rows_total);
    }
}

}  // extern "C"
