//! Accumulators stored by aggregate, one vector per aggregate indexed by group number: the
//! common aggregates (count, sum, avg) update in one tight loop over a batch's rows per
//! aggregate; the others keep one `Acc` per group.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, Float64Array, Int64Array, StringArray};
use arrow_buffer::{Buffer, NullBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};

use super::{overflow, Acc, Agg, Order};
use crate::data::ValueType;
use crate::error::{Error, Result};
use crate::expr::AggregateFunction;

pub(super) enum AccColumn {
    /// `count()`, or `count(x)` (rows where x is not null).
    Count(Vec<i64>),
    /// `sum` of integers: the sum, and whether any value was seen (else the sum is null).
    SumInt(Vec<i128>, Vec<bool>),
    SumFloat(Vec<f64>, Vec<bool>),
    /// `avg`: float sum, exact integer sum, count.
    Avg(Vec<f64>, Vec<i128>, Vec<i64>),
    Generic(Vec<Acc>),
}

impl AccColumn {
    pub(super) fn new(agg: &Agg) -> AccColumn {
        use AggregateFunction as A;
        match agg.function {
            A::Count => AccColumn::Count(Vec::new()),
            A::Sum if agg.input == Some(ValueType::Float) => {
                AccColumn::SumFloat(Vec::new(), Vec::new())
            }
            A::Sum => AccColumn::SumInt(Vec::new(), Vec::new()),
            A::Avg => AccColumn::Avg(Vec::new(), Vec::new(), Vec::new()),
            _ => AccColumn::Generic(Vec::new()),
        }
    }

    pub(super) fn push_group(&mut self, agg: &Agg) {
        match self {
            AccColumn::Count(c) => c.push(0),
            AccColumn::SumInt(s, seen) => {
                s.push(0);
                seen.push(false);
            }
            AccColumn::SumFloat(s, seen) => {
                s.push(0.0);
                seen.push(false);
            }
            AccColumn::Avg(s, i, c) => {
                s.push(0.0);
                i.push(0);
                c.push(0);
            }
            AccColumn::Generic(accs) => accs.push(agg.empty()),
        }
    }

    /// Adds every row of a batch: `values` is the aggregate's argument (`None` for
    /// `count()`), `ids` each row's group, `order` the first row's place in the input.
    /// Returns how many bytes the accumulators grew by outside their vector (kept texts,
    /// distinct values, list items).
    pub(super) fn update(
        &mut self,
        values: Option<&ArrayRef>,
        ids: &[usize],
        order: Order,
        call: &str,
    ) -> Result<isize> {
        let mut grew = 0isize;
        let valid = |row: usize| values.is_none_or(|v| v.is_valid(row));
        let all_valid = values.is_none_or(|v| v.null_count() == 0);
        match self {
            AccColumn::Count(counts) => {
                if all_valid {
                    for &id in ids {
                        counts[id] += 1;
                    }
                } else {
                    for (row, &id) in ids.iter().enumerate() {
                        counts[id] += i64::from(valid(row));
                    }
                }
            }
            AccColumn::SumInt(sums, seen) => {
                let array = values
                    .expect("sum has an argument")
                    .as_primitive::<Int64Type>();
                let data = array.values();
                for (row, &id) in ids.iter().enumerate() {
                    if all_valid || array.is_valid(row) {
                        // An i128 holds the sum of any 2^64 i64 values: no overflow here;
                        // whether the total fits an i64 is checked at the result.
                        sums[id] = sums[id].wrapping_add(i128::from(data[row]));
                        seen[id] = true;
                    }
                }
            }
            AccColumn::SumFloat(sums, seen) => {
                let array = values
                    .expect("sum has an argument")
                    .as_primitive::<Float64Type>();
                let data = array.values();
                for (row, &id) in ids.iter().enumerate() {
                    if all_valid || array.is_valid(row) {
                        sums[id] += data[row];
                        seen[id] = true;
                    }
                }
            }
            AccColumn::Avg(sums, int_sums, counts) => {
                let array = values.expect("avg has an argument");
                match array.data_type() {
                    DataType::Int64 => {
                        let ints = array.as_primitive::<Int64Type>();
                        let data = ints.values();
                        for (row, &id) in ids.iter().enumerate() {
                            if all_valid || ints.is_valid(row) {
                                int_sums[id] += i128::from(data[row]);
                                counts[id] += 1;
                            }
                        }
                    }
                    _ => {
                        let floats = array.as_primitive::<Float64Type>();
                        let data = floats.values();
                        for (row, &id) in ids.iter().enumerate() {
                            if all_valid || floats.is_valid(row) {
                                sums[id] += data[row];
                                counts[id] += 1;
                            }
                        }
                    }
                }
            }
            AccColumn::Generic(accs) => {
                for (row, &id) in ids.iter().enumerate() {
                    grew += accs[id].add(values, row, (order.0, order.1 + row as u64), call)?;
                }
            }
        }
        Ok(grew)
    }

    /// Bytes the accumulators' vectors take (what they hold outside them is counted by the
    /// table from what `update` returns).
    pub(super) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        match self {
            AccColumn::Count(c) => c.capacity() * size_of::<i64>(),
            AccColumn::SumInt(s, seen) => s.capacity() * size_of::<i128>() + seen.capacity(),
            AccColumn::SumFloat(s, seen) => s.capacity() * size_of::<f64>() + seen.capacity(),
            AccColumn::Avg(s, i, c) => {
                s.capacity() * size_of::<f64>()
                    + i.capacity() * size_of::<i128>()
                    + c.capacity() * size_of::<i64>()
            }
            AccColumn::Generic(accs) => accs.capacity() * size_of::<Acc>(),
        }
    }

    /// Group `id`'s state as an `Acc` (for snapshots, merges and results).
    pub(super) fn acc(&self, id: usize) -> Acc {
        match self {
            AccColumn::Count(c) => Acc::Count(c[id]),
            AccColumn::SumInt(s, seen) => Acc::SumInt(seen[id].then_some(s[id])),
            AccColumn::SumFloat(s, seen) => Acc::SumFloat(seen[id].then_some(s[id])),
            AccColumn::Avg(s, i, c) => Acc::Avg {
                sum: s[id],
                int_sum: i[id],
                count: c[id],
            },
            AccColumn::Generic(accs) => accs[id].clone(),
        }
    }

    /// Folds `other` (a state of the same aggregate) into group `id`.
    pub(super) fn merge(&mut self, id: usize, other: Acc, call: &str) -> Result<()> {
        match self {
            AccColumn::Generic(accs) => accs[id].merge(other, call),
            fast => {
                let mut acc = fast.acc(id);
                acc.merge(other, call)?;
                fast.set(id, acc);
                Ok(())
            }
        }
    }

    fn set(&mut self, id: usize, acc: Acc) {
        match (self, acc) {
            (AccColumn::Count(c), Acc::Count(n)) => c[id] = n,
            (AccColumn::SumInt(s, seen), Acc::SumInt(v)) => {
                s[id] = v.unwrap_or(0);
                seen[id] = v.is_some();
            }
            (AccColumn::SumFloat(s, seen), Acc::SumFloat(v)) => {
                s[id] = v.unwrap_or(0.0);
                seen[id] = v.is_some();
            }
            (
                AccColumn::Avg(s, i, c),
                Acc::Avg {
                    sum,
                    int_sum,
                    count,
                },
            ) => {
                s[id] = sum;
                i[id] = int_sum;
                c[id] = count;
            }
            (AccColumn::Generic(accs), acc) => accs[id] = acc,
            _ => unreachable!("merge checked that the kinds match"),
        }
    }

    /// Adds a group whose state is group `theirs` of `other` (the same aggregate), moved out
    /// of a table that is being merged away: a merge's new groups need no merging.
    pub(super) fn push_from(&mut self, other: &mut AccColumn, theirs: usize) {
        match (self, other) {
            (AccColumn::Count(mine), AccColumn::Count(their)) => mine.push(their[theirs]),
            (AccColumn::SumInt(sums, seen), AccColumn::SumInt(their_sums, their_seen)) => {
                sums.push(their_sums[theirs]);
                seen.push(their_seen[theirs]);
            }
            (AccColumn::SumFloat(sums, seen), AccColumn::SumFloat(their_sums, their_seen)) => {
                sums.push(their_sums[theirs]);
                seen.push(their_seen[theirs]);
            }
            (
                AccColumn::Avg(sums, ints, counts),
                AccColumn::Avg(their_sums, their_ints, their_counts),
            ) => {
                sums.push(their_sums[theirs]);
                ints.push(their_ints[theirs]);
                counts.push(their_counts[theirs]);
            }
            (AccColumn::Generic(accs), other) => accs.push(other.take(theirs)),
            (mine, other) => unreachable!(
                "states of one aggregate keep one kind: {} and {}",
                mine.kind(),
                other.kind()
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AccColumn::Count(_) => "count",
            AccColumn::SumInt(..) => "integer sum",
            AccColumn::SumFloat(..) => "float sum",
            AccColumn::Avg(..) => "average",
            AccColumn::Generic(_) => "generic",
        }
    }

    /// The states of `ids` moved out of a table that is being merged away.
    pub(super) fn take(&mut self, id: usize) -> Acc {
        match self {
            AccColumn::Generic(accs) => std::mem::replace(&mut accs[id], Acc::Count(0)),
            fast => fast.acc(id),
        }
    }

    /// The latest morsel an order-keeping accumulator holds a row of.
    pub(super) fn latest_morsel(&self) -> Option<u64> {
        match self {
            AccColumn::Generic(accs) => accs.iter().filter_map(Acc::latest_morsel).max(),
            _ => None,
        }
    }
}

/// Integer sums as 16 little-endian bytes in a spilled run (Arrow has no i128 column that
/// holds every i128).
const SUM_BYTES: i32 = 16;

impl AccColumn {
    /// The columns a spilled run holds for this aggregate (named after the output column
    /// `name`): the accumulators' own values, typed, for count, sum and avg; each group's
    /// `Acc` as JSON for the others.
    pub(super) fn spill_fields(&self, name: &str) -> Vec<Field> {
        let sum = || DataType::FixedSizeBinary(SUM_BYTES);
        match self {
            AccColumn::Count(_) => vec![Field::new(name, DataType::Int64, false)],
            AccColumn::SumInt(..) => vec![Field::new(name, sum(), true)],
            AccColumn::SumFloat(..) => vec![Field::new(name, DataType::Float64, true)],
            AccColumn::Avg(..) => vec![
                Field::new(format!("{name}.sum"), DataType::Float64, false),
                Field::new(format!("{name}.int_sum"), sum(), false),
                Field::new(format!("{name}.count"), DataType::Int64, false),
            ],
            AccColumn::Generic(_) => vec![Field::new(name, DataType::Utf8, false)],
        }
    }

    /// The spilled columns (`spill_fields`) of `groups`, in that order.
    pub(super) fn spilled(&self, groups: &[usize]) -> Vec<ArrayRef> {
        // Gathered in loops of their own: the groups lie scattered over vectors larger than
        // any cache, and a plain loop keeps many loads in flight.
        fn gather<T: Copy>(values: &[T], groups: &[usize]) -> Vec<T> {
            groups.iter().map(|&id| values[id]).collect()
        }
        fn sums(values: &[i128], groups: &[usize], seen: Option<&[bool]>) -> ArrayRef {
            // Each sum's bytes little-endian, whatever the machine (`merge_spilled` reads them so).
            let sums: Vec<i128> = groups.iter().map(|&id| values[id].to_le()).collect();
            let nulls = seen.map(|seen| NullBuffer::from(gather(seen, groups)));
            Arc::new(FixedSizeBinaryArray::new(
                SUM_BYTES,
                Buffer::from_vec(sums),
                nulls,
            ))
        }
        match self {
            AccColumn::Count(counts) => vec![Arc::new(Int64Array::from(gather(counts, groups)))],
            AccColumn::SumInt(values, seen) => vec![sums(values, groups, Some(seen))],
            AccColumn::SumFloat(values, seen) => vec![Arc::new(Float64Array::new(
                ScalarBuffer::from(gather(values, groups)),
                Some(NullBuffer::from(gather(seen, groups))),
            ))],
            AccColumn::Avg(values, int_sums, counts) => vec![
                Arc::new(Float64Array::from(gather(values, groups))),
                sums(int_sums, groups, None),
                Arc::new(Int64Array::from(gather(counts, groups))),
            ],
            AccColumn::Generic(accs) => {
                let texts: StringArray = groups
                    .iter()
                    .map(|&id| serde_json::to_string(&accs[id]).ok())
                    .collect();
                vec![Arc::new(texts)]
            }
        }
    }

    /// Folds spilled columns (`spill_fields`, checked by the caller) into the groups `ids`,
    /// one row each. `agg` is this aggregate, to check a JSON state's kind.
    pub(super) fn merge_spilled(
        &mut self,
        agg: &Agg,
        ids: &[usize],
        columns: &[ArrayRef],
        call: &str,
    ) -> Result<()> {
        let damaged =
            |why: &str| Error::runtime(format!("a spilled run of the aggregate is damaged: {why}"));
        let sum_at = |array: &FixedSizeBinaryArray, row: usize| -> i128 {
            let mut bytes = [0u8; SUM_BYTES as usize];
            bytes.copy_from_slice(array.value(row));
            i128::from_le_bytes(bytes)
        };
        match (self, columns) {
            (AccColumn::Count(counts), [column]) => {
                let values = column.as_primitive::<Int64Type>().values();
                for (&id, &count) in ids.iter().zip(values.iter()) {
                    counts[id] = counts[id].wrapping_add(count);
                }
            }
            (AccColumn::SumInt(sums, seen), [column]) => {
                let array = column.as_fixed_size_binary();
                for (row, &id) in ids.iter().enumerate() {
                    if array.is_valid(row) {
                        let sum = sum_at(array, row);
                        sums[id] = match seen[id] {
                            true => sums[id].checked_add(sum).ok_or_else(|| overflow(call))?,
                            false => sum,
                        };
                        seen[id] = true;
                    }
                }
            }
            (AccColumn::SumFloat(sums, seen), [column]) => {
                let array = column.as_primitive::<Float64Type>();
                for (row, &id) in ids.iter().enumerate() {
                    if array.is_valid(row) {
                        sums[id] += array.value(row);
                        seen[id] = true;
                    }
                }
            }
            (AccColumn::Avg(sums, int_sums, counts), [sum, int_sum, count]) => {
                let sum = sum.as_primitive::<Float64Type>().values();
                let int_sum = int_sum.as_fixed_size_binary();
                let count = count.as_primitive::<Int64Type>().values();
                for (row, &id) in ids.iter().enumerate() {
                    sums[id] += sum[row];
                    int_sums[id] = int_sums[id].wrapping_add(sum_at(int_sum, row));
                    counts[id] = counts[id].wrapping_add(count[row]);
                }
            }
            (AccColumn::Generic(accs), [column]) => {
                let texts = column.as_string::<i32>();
                let empty = std::mem::discriminant(&agg.empty());
                for (row, &id) in ids.iter().enumerate() {
                    let acc: Acc = serde_json::from_str(texts.value(row))
                        .map_err(|e| damaged(&e.to_string()))?;
                    if std::mem::discriminant(&acc) != empty {
                        return Err(damaged("a state of another kind"));
                    }
                    accs[id].merge(acc, call)?;
                }
            }
            _ => return Err(damaged("its columns do not match the aggregate")),
        }
        Ok(())
    }
}
