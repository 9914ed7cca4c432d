"""Word pools of the structure-defect generator, in Chinese and English: watermark texts, handles, logo
words, subtitles, headlines, meme and promo lines, scene-text signs and posters, page words."""

from __future__ import annotations


WM_TEXT = ["© 摄影网", "版权所有", "禁止转载", "样图 请勿商用", "光影图库", "素材天下", "© 光年图片", "未经授权 禁止使用",
           "原创摄影", "图片仅供参考", "预览图", "星河图库", "云端素材网", "高清原图", "© 山海视觉",
           "© stock photo", "stock photo", "SAMPLE", "PREVIEW", "PROOF", "© PhotoHub", "DO NOT COPY",
           "www.photo-site.com", "pixelstock.io", "© 2024 All Rights Reserved", "imagebank", "FOR REVIEW ONLY",
           "COMP IMAGE", "shotlab.net", "© Lumen Images"]
HANDLE_PREFIX = ["@", "@", "微博@", "抖音号：", "小红书号 ", "IG @", "© ", "Photo by @"]
HANDLE_NAME = ["user_123", "xiaoming", "阿花的相册", "旅行的猫", "lens_lover", "kiki.photo", "大橙子", "moonwalker",
               "摄影师老王", "sunny_day", "chen.studio", "青柠", "pixel_pete", "橘子汽水"]
LOGO_WORDS = ["新闻", "体育", "财经", "直播", "电影", "综艺", "卫视", "影视", "少儿", "天气", "NEWS", "NEWS TV", "LIVE",
              "HD", "TV", "SPORTS", "4K", "MUSIC", "STAR", "Q TV", "FILM", "ONE"]
SUBTITLE_ZH = ["我们明天早上八点出发", "你到底想说什么？", "这件事我一直没告诉你", "今天的天气真不错", "欢迎收看本期节目",
               "他们已经在路上了", "你还记得那个夏天吗", "我会一直等你回来", "快看，那边有人", "谢谢大家的支持",
               "这就是我的选择", "别担心，一切都会好起来的", "我们得赶快离开这里", "这是最后的机会", "你听说了吗？",
               "下一站，北京", "今晚我们吃火锅吧", "这道菜的做法很简单"]
SUBTITLE_EN = ["We leave at eight tomorrow morning", "What are you trying to say?", "I never told you about this",
               "The weather is lovely today", "Welcome to this episode", "They are already on their way",
               "Do you remember that summer?", "I'll wait for you", "Look, someone's over there",
               "Thank you all for your support", "This is my choice", "Don't worry, it will be fine",
               "We have to get out of here", "This is the last chance", "Did you hear the news?",
               "Next stop, Beijing", "Let's have hotpot tonight", "This recipe is really simple"]
HEADLINES = ["突发：暴雨导致部分路段交通中断", "新地铁线路今日正式开通", "本市将迎来今年首场降雪", "专家解读最新经济数据",
             "BREAKING: Storm hits the coast", "LIVE: Markets open higher", "City council approves new park",
             "Weather alert for the weekend", "全国多地气温创新高", "Election results expected tonight"]
BAR_TAGS = ["突发", "直播", "快讯", "新闻", "BREAKING", "LIVE", "UPDATE", "NEWS"]
MEME = ["当你周一早上醒来", "我太难了", "这就是生活", "不要慌", "我裂开了", "打工人的日常", "WHEN YOU SEE IT",
        "ME ON MONDAY", "NOBODY:", "BUT WHY", "TRUST ME", "SUCH WOW", "MOOD", "EXPECTATION VS REALITY"]
PROMO = ["限时特价", "包邮", "新品上市", "热卖", "买一送一", "秒杀", "爆款", "仅剩3天", "立减100元", "¥99", "五折",
         "SALE -50%", "NEW", "HOT", "50% OFF", "FREE SHIPPING", "$19.99", "BEST SELLER", "LIMITED", "BUY 1 GET 1"]
BUBBLE = ["哈哈哈", "我太难了", "嗯？", "真的吗？", "救命！", "好耶", "饿了", "OMG!", "what?!", "Hello!", "LOL",
          "Yes!", "Hmm...", "Nope"]
TITLES = ["周末愉快", "美好的一天", "旅行日记", "新年快乐", "早安", "我的日常", "今日份快乐", "Good Morning",
          "Summer Vibes", "Happy Birthday", "Travel Diary", "Weekend Mood", "Best Day Ever", "Hello Spring"]
SIGNS = ["中山路", "人民路", "出口 EXIT", "禁止停车", "营业中", "便利店", "地铁站 Metro", "北京西站", "书店 BOOKS", "面馆",
         "停车场 P", "小心地滑", "银行 BANK", "医院", "火锅", "公交站 Bus Stop", "茶馆", "OPEN", "Main St",
         "Coffee & Tea", "PHARMACY", "STOP", "ONE WAY", "BAKERY", "No Parking", "Hotel", "Platform 3", "EXIT"]
POSTERS = ["音乐节", "夏日电影节", "读书会", "演唱会", "招聘", "美术展", "JAZZ NIGHT", "ART EXHIBITION",
           "FILM FESTIVAL", "GRAND OPENING", "CONCERT", "BOOK FAIR"]
PAGE_WORDS = ("the of and to in is that for with as was on by this data image model are from text which it be at "
              "an not we can each one all their been has more than other time into only some may when these two "
              "数据 图像 模型 文本 训练 方法 结果 研究 系统 使用 我们 可以 一个 这个 进行 通过 分析 问题 实验 表明").split()
