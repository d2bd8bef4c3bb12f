-- How ratings are distributed within each product category.
SELECT product_category, star_rating, COUNT(*) AS reviews,
       ROUND(100.0 * COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY product_category), 2) AS share_percent
FROM {table}
GROUP BY product_category, star_rating
ORDER BY product_category, star_rating
