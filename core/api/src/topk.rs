//! Which indices `torch.topk(values, k)` picks on the CPU, ties included.
//!
//! The reference sampler selects positions with `torch.topk` over the whole
//! sequence, where every non-candidate holds `-inf`. When fewer candidates
//! than `k` remain (after an end-of-turn, for instance), the rest of the
//! picks are `-inf` entries, and *which* ones depends on the algorithm:
//! PyTorch's CPU kernel (`topk_impl_loop` in `aten/src/ATen/native/TopKImpl.h`)
//! runs libstdc++'s `std::partial_sort` when `k * 64 <= n`, else
//! `std::nth_element`, on `(value, index)` pairs with the comparator
//! `a.value > b.value`. This module reproduces both algorithms step for step
//! (heap select; introselect with median-of-three pivots and insertion sort),
//! so the picked set is the reference's. Tested against `torch.topk` on the
//! cases recorded in `tests/reference/fixtures/official`.

/// One `(value, index)` element of the queue.
type Elem = (f64, usize);

/// The comparator: NaN first, then larger values.
fn comp(a: &Elem, b: &Elem) -> bool {
    (a.0.is_nan() && !b.0.is_nan()) || a.0 > b.0
}

/// The indices `torch.topk(values, k)` returns on the CPU (as a set; their
/// order is not meaningful). `k` is capped at `values.len()`.
#[doc(hidden)]
pub fn torch_topk_indices(values: &[f64], k: usize) -> Vec<usize> {
    let n = values.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut q: Vec<Elem> = values.iter().copied().zip(0..).collect();
    if k * 64 <= n {
        heap_select(&mut q, 0, k, n);
    } else {
        nth_element(&mut q, k - 1);
    }
    q[..k].iter().map(|e| e.1).collect()
}

/// `std::__adjust_heap` on `q[first..first + len]`.
fn adjust_heap(q: &mut [Elem], first: usize, mut hole: usize, len: usize, value: Elem) {
    let top = hole;
    let mut second = hole;
    while len >= 2 && second < (len - 1) / 2 {
        second = 2 * (second + 1);
        if comp(&q[first + second], &q[first + second - 1]) {
            second -= 1;
        }
        q[first + hole] = q[first + second];
        hole = second;
    }
    if len & 1 == 0 && len >= 2 && second == (len - 2) / 2 {
        second = 2 * (second + 1);
        q[first + hole] = q[first + second - 1];
        hole = second - 1;
    }
    // std::__push_heap
    while hole > top {
        let parent = (hole - 1) / 2;
        if !comp(&q[first + parent], &value) {
            break;
        }
        q[first + hole] = q[first + parent];
        hole = parent;
    }
    q[first + hole] = value;
}

/// `std::__make_heap` on `q[first..middle]`.
fn make_heap(q: &mut [Elem], first: usize, middle: usize) {
    let len = middle - first;
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = q[first + parent];
        adjust_heap(q, first, parent, len, value);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

/// `std::__heap_select(first, middle, last)`: the heap of `[first, middle)`
/// keeps the best elements of `[first, last)`.
fn heap_select(q: &mut [Elem], first: usize, middle: usize, last: usize) {
    make_heap(q, first, middle);
    for i in middle..last {
        if comp(&q[i], &q[first]) {
            // std::__pop_heap(first, middle, i)
            let value = q[i];
            q[i] = q[first];
            adjust_heap(q, first, 0, middle - first, value);
        }
    }
}

/// `std::__move_median_to_first`.
fn move_median_to_first(q: &mut [Elem], result: usize, a: usize, b: usize, c: usize) {
    let pick = if comp(&q[a], &q[b]) {
        if comp(&q[b], &q[c]) {
            b
        } else if comp(&q[a], &q[c]) {
            c
        } else {
            a
        }
    } else if comp(&q[a], &q[c]) {
        a
    } else if comp(&q[b], &q[c]) {
        c
    } else {
        b
    };
    q.swap(result, pick);
}

/// `std::__unguarded_partition(first, last, pivot)`.
fn unguarded_partition(q: &mut [Elem], mut first: usize, mut last: usize, pivot: usize) -> usize {
    loop {
        while comp(&q[first], &q[pivot]) {
            first += 1;
        }
        last -= 1;
        while comp(&q[pivot], &q[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        q.swap(first, last);
        first += 1;
    }
}

/// `std::__insertion_sort` on `q[first..last]`.
fn insertion_sort(q: &mut [Elem], first: usize, last: usize) {
    if first == last {
        return;
    }
    for i in first + 1..last {
        let val = q[i];
        if comp(&val, &q[first]) {
            q.copy_within(first..i, first + 1);
            q[first] = val;
        } else {
            // std::__unguarded_linear_insert
            let mut hole = i;
            while comp(&val, &q[hole - 1]) {
                q[hole] = q[hole - 1];
                hole -= 1;
            }
            q[hole] = val;
        }
    }
}

/// `std::nth_element(begin, begin + nth, end)` (libstdc++'s introselect).
fn nth_element(q: &mut [Elem], nth: usize) {
    let (mut first, mut last) = (0usize, q.len());
    if first == last || nth == last {
        return;
    }
    let mut depth = 2 * (usize::BITS - 1 - last.leading_zeros()) as usize;
    while last - first > 3 {
        if depth == 0 {
            heap_select(q, first, nth + 1, last);
            q.swap(first, nth);
            return;
        }
        depth -= 1;
        let mid = first + (last - first) / 2;
        move_median_to_first(q, first, first + 1, mid, last - 1);
        let cut = unguarded_partition(q, first + 1, last, first);
        if cut <= nth {
            first = cut;
        } else {
            last = cut;
        }
    }
    insertion_sort(q, first, last);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sorted(mut v: Vec<usize>) -> Vec<usize> {
        v.sort_unstable();
        v
    }

    #[test]
    fn distinct_values_give_the_k_largest_on_both_paths() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [1usize, 2, 5, 40, 64, 65, 300, 1000] {
            let v: Vec<f64> = (0..n).map(|_| rng.random()).collect();
            for k in [1usize, 2, 3, 7, 16] {
                let mut idx: Vec<usize> = (0..n).collect();
                idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
                let expected = sorted(idx[..k.min(n)].to_vec());
                assert_eq!(sorted(torch_topk_indices(&v, k)), expected, "n {n} k {k}");
            }
        }
    }

    #[test]
    fn ties_among_minus_infinity_on_the_heap_path_keep_the_first_indices() {
        // k * 64 <= n: partial_sort; the -inf picks come from the initial heap.
        let mut v = vec![f64::NEG_INFINITY; 300];
        v[200] = 0.5;
        let got = sorted(torch_topk_indices(&v, 4));
        assert!(got.contains(&200));
        assert!(got.iter().filter(|&&i| i != 200).all(|&i| i < 4), "{got:?}");
    }

    #[test]
    fn zero_or_oversized_k() {
        assert!(torch_topk_indices(&[1.0, 2.0], 0).is_empty());
        assert_eq!(sorted(torch_topk_indices(&[1.0, 2.0], 5)), vec![0, 1]);
    }
}
