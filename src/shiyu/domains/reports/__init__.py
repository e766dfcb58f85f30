"""Reports 报告: the periodic analysis report "一分析三报告" and its HTML/PDF rendering."""
