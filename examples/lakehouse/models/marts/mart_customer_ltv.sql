-- Customer lifetime value. Incremental with full_refresh: false: dbt silently ignores
-- --full-refresh for this model, so a rescue cannot rebuild it from scratch by accident.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='customer_id',
        full_refresh=false,
        tags=['finance'],
        meta={'owner': 'crm', 'rescue': {'heavy': false}},
    )
}}

select
    customer_id,
    order_count,
    kept_order_count,
    first_order_date,
    last_order_date,
    net_amount as lifetime_value,
    case
        when net_amount >= 400 then 'gold'
        when net_amount >= 150 then 'silver'
        else 'bronze'
    end as value_tier
from {{ ref('int_customer_orders') }}
{% if is_incremental() %}
where last_order_date >= (select max(last_order_date) - interval '7 days' from {{ this }})
   or customer_id not in (select customer_id from {{ this }})
{% endif %}
