//! UTM tags and the cities they name: shared by the ad loaders and the sales attribution.
//!
//! Convention of our ads: `utm_content=<city alias>_<dd>_<mm>` (`msk_05_12`: Moscow, the show
//! of 5 December). The alias table maps to the city names QTickets uses (`dim_events.city`),
//! so ad spend and sales meet on the same city.

/// The five tags, in this order everywhere (tables, views, tests).
pub const KEYS: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
];

/// City alias → the city's name as QTickets spells it.
pub const CITY_ALIASES: &[(&str, &str)] = &[
    ("msk", "Москва"),
    ("mow", "Москва"),
    ("spb", "Санкт-Петербург"),
    ("led", "Санкт-Петербург"),
    ("ekb", "Екатеринбург"),
    ("nsk", "Новосибирск"),
    ("kzn", "Казань"),
    ("nn", "Нижний Новгород"),
    ("krd", "Краснодар"),
    ("sam", "Самара"),
    ("rnd", "Ростов-на-Дону"),
    ("ufa", "Уфа"),
    ("perm", "Пермь"),
    ("vrn", "Воронеж"),
    ("kja", "Красноярск"),
    ("chel", "Челябинск"),
];

/// `?a=1&b=2` (or a whole URL) → its pairs, percent-decoded.
pub fn query_pairs(url_or_query: &str) -> Vec<(String, String)> {
    let query = match url_or_query.split_once('?') {
        Some((_, q)) => q,
        None if url_or_query.contains("://") => "",
        None => url_or_query,
    };
    let query = query.split('#').next().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The five tags from `pairs` (`""` where absent; the first occurrence of a key wins).
pub fn tags(pairs: &[(String, String)]) -> [String; 5] {
    KEYS.map(|key| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    })
}

/// A banner's tags: its URL's, and for every key the URL lacks (or leaves empty), the
/// group-level tags, which the ad service appends to every banner URL of the group.
pub fn merged(banner_url: &str, group_utm: Option<&str>) -> [String; 5] {
    let own = tags(&query_pairs(banner_url));
    let group = group_utm.map(|g| tags(&query_pairs(g))).unwrap_or_default();
    let mut out = own;
    for (mine, theirs) in out.iter_mut().zip(group) {
        if mine.is_empty() {
            *mine = theirs;
        }
    }
    out
}

/// The city a tag or name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum City {
    /// A known alias, resolved to the city's name.
    Known(String),
    /// An alias the table does not know: kept as is (and counted by the loaders).
    Unknown(String),
    /// Nothing that looks like a city.
    None,
}

impl City {
    /// The value stored in a `city` column.
    pub fn name(&self) -> &str {
        match self {
            City::Known(c) | City::Unknown(c) => c,
            City::None => "",
        }
    }
}

fn alias(token: &str) -> Option<&'static str> {
    // Lower-cased city names, computed once (a report of a million rows asks per row).
    static LOWER: std::sync::OnceLock<Vec<(String, &'static str)>> = std::sync::OnceLock::new();
    let lower_names = LOWER.get_or_init(|| {
        CITY_ALIASES
            .iter()
            .map(|(_, name)| (name.to_lowercase(), *name))
            .collect()
    });
    let lower = token.to_lowercase();
    CITY_ALIASES
        .iter()
        .find(|(a, _)| *a == lower)
        .map(|(_, name)| *name)
        .or_else(|| {
            lower_names
                .iter()
                .find(|(l, _)| *l == lower)
                .map(|(_, name)| *name)
        })
}

/// `msk_05_12` → Moscow; `tula_01_02` → unknown `tula`; `banner_7` → none. Only the
/// convention's shape (`<alias>_<dd>_<mm>`) counts as naming a city.
pub fn city_of_content(content: &str) -> City {
    let mut parts = content.split('_');
    let (Some(first), Some(dd), Some(mm), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return City::None;
    };
    let day =
        |s: &str, max: u32| s.len() <= 2 && s.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n));
    if first.is_empty() || !day(dd, 31) || !day(mm, 12) {
        return City::None;
    }
    match alias(first) {
        Some(name) => City::Known(name.to_owned()),
        None => City::Unknown(first.to_lowercase()),
    }
}

/// The first word of a campaign name that is a known alias or city name (`Поиск msk рок` →
/// Moscow); Direct reports carry no UTM, so its campaigns name their city.
pub fn city_in_name(name: &str) -> City {
    name.split(|c: char| c.is_whitespace() || matches!(c, '_' | '|' | '/' | ',' | '-'))
        .find_map(alias)
        .map_or(City::None, |c| City::Known(c.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_query_has_no_pairs_and_cities_name_themselves() {
        assert!(query_pairs("https://tickets.example.ru/event/5").is_empty());
        assert_eq!(
            query_pairs("utm_source=vk&utm_medium=cpc"),
            [
                ("utm_source".into(), "vk".into()),
                ("utm_medium".into(), "cpc".into())
            ]
        );
        assert_eq!(City::Known("Москва".into()).name(), "Москва");
        assert_eq!(City::Unknown("tula".into()).name(), "tula");
        assert_eq!(City::None.name(), "");
    }

    #[test]
    fn banner_tags_win_over_the_group() {
        let t = merged(
            "https://x.ru/e/1?utm_content=msk_05_12&utm_campaign=own",
            Some("utm_source=vk&utm_medium=cpc&utm_campaign=group"),
        );
        assert_eq!(t, ["vk", "cpc", "own", "msk_05_12", ""].map(str::to_owned));
        let plain = merged("https://x.ru/e/1", None);
        assert_eq!(plain, <[String; 5]>::default());
        let encoded = merged(
            "https://x.ru/?utm_campaign=%D0%BA%D0%BE%D0%BD%D1%86%D0%B5%D1%80%D1%82#frag",
            None,
        );
        assert_eq!(encoded[2], "концерт");
    }

    #[test]
    fn cities_from_content_and_names() {
        assert_eq!(city_of_content("msk_05_12"), City::Known("Москва".into()));
        assert_eq!(
            city_of_content("SPB_1_1"),
            City::Known("Санкт-Петербург".into())
        );
        assert_eq!(city_of_content("tula_01_02"), City::Unknown("tula".into()));
        assert_eq!(city_of_content("banner_7"), City::None);
        assert_eq!(city_of_content("msk_32_01"), City::None);
        assert_eq!(city_of_content(""), City::None);
        assert_eq!(
            city_in_name("Поиск ekb client-a 1"),
            City::Known("Екатеринбург".into())
        );
        assert_eq!(
            city_in_name("Казань | ретаргет"),
            City::Known("Казань".into())
        );
        assert_eq!(city_in_name("Поиск tula 2"), City::None);
    }
}
