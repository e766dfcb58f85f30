"""Scheduled jobs 定时任务: each domain registers its tasks; ``shiyu serve`` runs them."""
