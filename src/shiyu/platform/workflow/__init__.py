"""Work-item workflow support 工单流转: deadlines 时限 on a working-day calendar 工作日历."""
