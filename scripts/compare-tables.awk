#!/usr/bin/awk -f
# Usage: scripts/compare-tables.awk BEFORE AFTER
# Joins two outputs of the operations benchmark (benches/operations.rs) row by row: for each
# table and operation, the median and ÷ bare before and after, after's ÷ bare over before's
# (below 1: faster relative to the same round trip), and ÷ raw before and after where the
# benchmark printed it ("–" where it did not).
function row(line,    rest, f, n, i) {
  label = substr(line, 1, 32); sub(/ +$/, "", label)
  rest = substr(line, 34)
  n = split(rest, f, " ")
  i = 3
  if (f[4] ~ /^\(/) i = 4 # round trips given as "mean (min–max)"
  median = f[1]; ratio = f[i + 2]
  # A benchmark with the raw column prints "raw µs" and "÷ raw" next (numbers, or "—" where
  # a row has none); anything else is shown as "–".
  raw_ratio = (f[i + 4] ~ /^[0-9.]+$/) ? f[i + 4] : "–"
}
FNR == 1 { file++; table = 0 }
/^Every operation, / { table++; heading[table] = $0; sub(/:.*/, "", heading[table]); next }
table && /^[a-zA-Z].* +[0-9.]+ +[0-9.]+ / && $0 !~ /^(bare|machine|targets|operation)/ {
  row($0)
  key = table SUBSEP label
  if (file == 1) { before_median[key] = median; before_ratio[key] = ratio; before_raw[key] = raw_ratio }
  else if (key in before_median) {
    if (!(table in printed)) {
      printed[table] = 1
      printf "%s\n%-32s %10s %8s %10s %8s %9s %8s %8s\n", heading[table], "operation", "before µs", "÷ bare", "after µs", "÷ bare", "after/bef", "÷ raw b", "÷ raw a"
    }
    change = before_ratio[key] > 0 ? sprintf("%.2f", ratio / before_ratio[key]) : "–"
    printf "%-32s %10s %8s %10s %8s %9s %8s %8s\n", label, before_median[key], before_ratio[key], median, ratio, change, before_raw[key], raw_ratio
  }
}
