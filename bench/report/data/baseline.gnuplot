set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'baseline.png'
set multiplot layout 4,1 title 'baseline (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:8]
set logscale y
set ylabel 'p50 ms (log)'
plot 'data/baseline-naive.tsv' using 1:2 with linespoints title 'naive', 'data/baseline-retries.tsv' using 1:2 with linespoints title 'retries', 'data/baseline-resilient.tsv' using 1:2 with linespoints title 'resilient', 'data/baseline-async.tsv' using 1:2 with linespoints title 'async', 'data/baseline-shared_db_batch.tsv' using 1:2 with linespoints title 'shared_db_batch', 'data/baseline-direct_db_write.tsv' using 1:2 with linespoints title 'direct_db_write', 'data/baseline-file_drop.tsv' using 1:2 with linespoints title 'file_drop'
set ylabel 'p99 ms (log)'
plot 'data/baseline-naive.tsv' using 1:3 with linespoints title 'naive', 'data/baseline-retries.tsv' using 1:3 with linespoints title 'retries', 'data/baseline-resilient.tsv' using 1:3 with linespoints title 'resilient', 'data/baseline-async.tsv' using 1:3 with linespoints title 'async', 'data/baseline-shared_db_batch.tsv' using 1:3 with linespoints title 'shared_db_batch', 'data/baseline-direct_db_write.tsv' using 1:3 with linespoints title 'direct_db_write', 'data/baseline-file_drop.tsv' using 1:3 with linespoints title 'file_drop'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/baseline-naive.tsv' using 1:4 with linespoints title 'naive', 'data/baseline-retries.tsv' using 1:4 with linespoints title 'retries', 'data/baseline-resilient.tsv' using 1:4 with linespoints title 'resilient', 'data/baseline-async.tsv' using 1:4 with linespoints title 'async', 'data/baseline-shared_db_batch.tsv' using 1:4 with linespoints title 'shared_db_batch', 'data/baseline-direct_db_write.tsv' using 1:4 with linespoints title 'direct_db_write', 'data/baseline-file_drop.tsv' using 1:4 with linespoints title 'file_drop'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/baseline-naive.tsv' using 1:5 with linespoints title 'naive', 'data/baseline-retries.tsv' using 1:5 with linespoints title 'retries', 'data/baseline-resilient.tsv' using 1:5 with linespoints title 'resilient', 'data/baseline-async.tsv' using 1:5 with linespoints title 'async', 'data/baseline-shared_db_batch.tsv' using 1:5 with linespoints title 'shared_db_batch', 'data/baseline-direct_db_write.tsv' using 1:5 with linespoints title 'direct_db_write', 'data/baseline-file_drop.tsv' using 1:5 with linespoints title 'file_drop'
unset multiplot
