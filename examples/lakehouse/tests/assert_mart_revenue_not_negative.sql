-- Singular test: revenue can never be negative. Returns the offending days.
{{ config(tags=['finance']) }}

select order_date, gross_revenue, net_revenue
from {{ ref('mart_revenue') }}
where gross_revenue < 0
   or coalesce(net_revenue, 0) < 0
   or coalesce(returned_revenue, 0) < 0
