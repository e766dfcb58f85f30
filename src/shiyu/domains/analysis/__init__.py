"""Analysis 分析: spatial statistics over grids and work items (hot spots 热点, Getis-Ord Gi*)."""
