-- Reviews, reviewers and average rating per year.
SELECT year, COUNT(*) AS reviews, COUNT(DISTINCT customer_id) AS customers,
       ROUND(AVG(star_rating), 2) AS average_stars
FROM {table}
GROUP BY year
ORDER BY year
