set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'appointments_slow.png'
set multiplot layout 4,1 title 'appointments_slow (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:20]
set object rect from 3.00, graph 0 to 13.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set logscale y
set ylabel 'p50 ms (log)'
plot 'data/appointments_slow-naive.tsv' using 1:2 with linespoints title 'naive', 'data/appointments_slow-retries.tsv' using 1:2 with linespoints title 'retries', 'data/appointments_slow-resilient.tsv' using 1:2 with linespoints title 'resilient', 'data/appointments_slow-async.tsv' using 1:2 with linespoints title 'async', 'data/appointments_slow-file_drop.tsv' using 1:2 with linespoints title 'file_drop'
set ylabel 'p99 ms (log)'
plot 'data/appointments_slow-naive.tsv' using 1:3 with linespoints title 'naive', 'data/appointments_slow-retries.tsv' using 1:3 with linespoints title 'retries', 'data/appointments_slow-resilient.tsv' using 1:3 with linespoints title 'resilient', 'data/appointments_slow-async.tsv' using 1:3 with linespoints title 'async', 'data/appointments_slow-file_drop.tsv' using 1:3 with linespoints title 'file_drop'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/appointments_slow-naive.tsv' using 1:4 with linespoints title 'naive', 'data/appointments_slow-retries.tsv' using 1:4 with linespoints title 'retries', 'data/appointments_slow-resilient.tsv' using 1:4 with linespoints title 'resilient', 'data/appointments_slow-async.tsv' using 1:4 with linespoints title 'async', 'data/appointments_slow-file_drop.tsv' using 1:4 with linespoints title 'file_drop'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/appointments_slow-naive.tsv' using 1:5 with linespoints title 'naive', 'data/appointments_slow-retries.tsv' using 1:5 with linespoints title 'retries', 'data/appointments_slow-resilient.tsv' using 1:5 with linespoints title 'resilient', 'data/appointments_slow-async.tsv' using 1:5 with linespoints title 'async', 'data/appointments_slow-file_drop.tsv' using 1:5 with linespoints title 'file_drop'
unset multiplot
