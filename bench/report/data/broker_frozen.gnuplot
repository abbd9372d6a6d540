set terminal pngcairo size 1000,900 noenhanced font ',9'
set output 'broker_frozen.png'
set multiplot layout 4,1 title 'broker_frozen (fault windows shaded; x: intended send time, s)'
set grid
set key outside right
set xrange [0:20]
set object rect from 3.00, graph 0 to 13.00, graph 1 behind fillcolor rgb '#ffe0e0' fillstyle solid noborder
set ylabel 'p50 ms'
plot 'data/broker_frozen-resilient.tsv' using 1:2 with linespoints title 'resilient', 'data/broker_frozen-async.tsv' using 1:2 with linespoints title 'async'
set ylabel 'p99 ms'
plot 'data/broker_frozen-resilient.tsv' using 1:3 with linespoints title 'resilient', 'data/broker_frozen-async.tsv' using 1:3 with linespoints title 'async'
unset logscale y
set ylabel 'errors %'
set yrange [0:100]
plot 'data/broker_frozen-resilient.tsv' using 1:4 with linespoints title 'resilient', 'data/broker_frozen-async.tsv' using 1:4 with linespoints title 'async'
set ylabel 'morgue breaker open'
set yrange [-0.1:1.1]
plot 'data/broker_frozen-resilient.tsv' using 1:5 with linespoints title 'resilient', 'data/broker_frozen-async.tsv' using 1:5 with linespoints title 'async'
unset multiplot
