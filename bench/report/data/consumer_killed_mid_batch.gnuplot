set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'consumer_killed_mid_batch.png'
set multiplot layout 4,1 title 'consumer_killed_mid_batch (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:8]
set object rect from 1.00, graph 0 to 4.50, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set ylabel 'p50 ms'
plot 'data/consumer_killed_mid_batch-async.tsv' using 1:2 with linespoints title 'async', 'data/consumer_killed_mid_batch-file_drop.tsv' using 1:2 with linespoints title 'file_drop'
set ylabel 'p99 ms'
plot 'data/consumer_killed_mid_batch-async.tsv' using 1:3 with linespoints title 'async', 'data/consumer_killed_mid_batch-file_drop.tsv' using 1:3 with linespoints title 'file_drop'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/consumer_killed_mid_batch-async.tsv' using 1:4 with linespoints title 'async', 'data/consumer_killed_mid_batch-file_drop.tsv' using 1:4 with linespoints title 'file_drop'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/consumer_killed_mid_batch-async.tsv' using 1:5 with linespoints title 'async', 'data/consumer_killed_mid_batch-file_drop.tsv' using 1:5 with linespoints title 'file_drop'
unset multiplot
