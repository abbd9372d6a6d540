set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'morgue_killed.png'
set multiplot layout 4,1 title 'morgue_killed (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:8]
set object rect from 2.00, graph 0 to 4.50, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set logscale y
set ylabel 'p50 ms (log)'
plot 'data/morgue_killed-naive.tsv' using 1:2 with linespoints title 'naive', 'data/morgue_killed-retries.tsv' using 1:2 with linespoints title 'retries', 'data/morgue_killed-resilient.tsv' using 1:2 with linespoints title 'resilient', 'data/morgue_killed-async.tsv' using 1:2 with linespoints title 'async', 'data/morgue_killed-shared_db_batch.tsv' using 1:2 with linespoints title 'shared_db_batch', 'data/morgue_killed-direct_db_write.tsv' using 1:2 with linespoints title 'direct_db_write', 'data/morgue_killed-file_drop.tsv' using 1:2 with linespoints title 'file_drop'
set ylabel 'p99 ms (log)'
plot 'data/morgue_killed-naive.tsv' using 1:3 with linespoints title 'naive', 'data/morgue_killed-retries.tsv' using 1:3 with linespoints title 'retries', 'data/morgue_killed-resilient.tsv' using 1:3 with linespoints title 'resilient', 'data/morgue_killed-async.tsv' using 1:3 with linespoints title 'async', 'data/morgue_killed-shared_db_batch.tsv' using 1:3 with linespoints title 'shared_db_batch', 'data/morgue_killed-direct_db_write.tsv' using 1:3 with linespoints title 'direct_db_write', 'data/morgue_killed-file_drop.tsv' using 1:3 with linespoints title 'file_drop'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/morgue_killed-naive.tsv' using 1:4 with linespoints title 'naive', 'data/morgue_killed-retries.tsv' using 1:4 with linespoints title 'retries', 'data/morgue_killed-resilient.tsv' using 1:4 with linespoints title 'resilient', 'data/morgue_killed-async.tsv' using 1:4 with linespoints title 'async', 'data/morgue_killed-shared_db_batch.tsv' using 1:4 with linespoints title 'shared_db_batch', 'data/morgue_killed-direct_db_write.tsv' using 1:4 with linespoints title 'direct_db_write', 'data/morgue_killed-file_drop.tsv' using 1:4 with linespoints title 'file_drop'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/morgue_killed-naive.tsv' using 1:5 with linespoints title 'naive', 'data/morgue_killed-retries.tsv' using 1:5 with linespoints title 'retries', 'data/morgue_killed-resilient.tsv' using 1:5 with linespoints title 'resilient', 'data/morgue_killed-async.tsv' using 1:5 with linespoints title 'async', 'data/morgue_killed-shared_db_batch.tsv' using 1:5 with linespoints title 'shared_db_batch', 'data/morgue_killed-direct_db_write.tsv' using 1:5 with linespoints title 'direct_db_write', 'data/morgue_killed-file_drop.tsv' using 1:5 with linespoints title 'file_drop'
unset multiplot
