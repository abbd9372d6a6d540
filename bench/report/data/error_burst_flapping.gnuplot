set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'error_burst_flapping.png'
set multiplot layout 4,1 title 'error_burst_flapping (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:8]
set object rect from 1.00, graph 0 to 2.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set object rect from 3.00, graph 0 to 4.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set object rect from 5.00, graph 0 to 6.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set logscale y
set ylabel 'p50 ms (log)'
plot 'data/error_burst_flapping-naive.tsv' using 1:2 with linespoints title 'naive', 'data/error_burst_flapping-retries.tsv' using 1:2 with linespoints title 'retries', 'data/error_burst_flapping-resilient.tsv' using 1:2 with linespoints title 'resilient', 'data/error_burst_flapping-async.tsv' using 1:2 with linespoints title 'async', 'data/error_burst_flapping-file_drop.tsv' using 1:2 with linespoints title 'file_drop'
set ylabel 'p99 ms (log)'
plot 'data/error_burst_flapping-naive.tsv' using 1:3 with linespoints title 'naive', 'data/error_burst_flapping-retries.tsv' using 1:3 with linespoints title 'retries', 'data/error_burst_flapping-resilient.tsv' using 1:3 with linespoints title 'resilient', 'data/error_burst_flapping-async.tsv' using 1:3 with linespoints title 'async', 'data/error_burst_flapping-file_drop.tsv' using 1:3 with linespoints title 'file_drop'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/error_burst_flapping-naive.tsv' using 1:4 with linespoints title 'naive', 'data/error_burst_flapping-retries.tsv' using 1:4 with linespoints title 'retries', 'data/error_burst_flapping-resilient.tsv' using 1:4 with linespoints title 'resilient', 'data/error_burst_flapping-async.tsv' using 1:4 with linespoints title 'async', 'data/error_burst_flapping-file_drop.tsv' using 1:4 with linespoints title 'file_drop'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/error_burst_flapping-naive.tsv' using 1:5 with linespoints title 'naive', 'data/error_burst_flapping-retries.tsv' using 1:5 with linespoints title 'retries', 'data/error_burst_flapping-resilient.tsv' using 1:5 with linespoints title 'resilient', 'data/error_burst_flapping-async.tsv' using 1:5 with linespoints title 'async', 'data/error_burst_flapping-file_drop.tsv' using 1:5 with linespoints title 'file_drop'
unset multiplot
